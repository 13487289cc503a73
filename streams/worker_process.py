"""WorkerProcess: a `driftline worker` child process, for `driftline dev`, the demo, tests."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from streams.embedded import parent_death_preexec

_URL = re.compile(r"web server: (http://\S+)")


class WorkerProcess:
    """Start, stop, kill and restart one worker; its output goes to ``log_path``."""

    def __init__(
        self,
        log_path: Path,
        bootstrap_servers: str,
        redis_url: str,
        config_path: str | os.PathLike[str] | None = None,
        web_port: int = 0,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.log_path = Path(log_path)
        self.config_path = None if config_path is None else str(config_path)
        self.web_port = web_port
        self.env = {
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap_servers,
            "REDIS_URL": redis_url,
            "PYTHONUNBUFFERED": "1",
            **(extra_env or {}),
        }
        self.proc: subprocess.Popen[bytes] | None = None
        self._log_offset = 0

    def start(self) -> WorkerProcess:
        """Launch the worker (in its own process group, so signals reach only it)."""
        if self.running:
            raise RuntimeError("worker already running")
        cmd = [sys.executable, "-m", "streams.cli", "worker", "--web-port", str(self.web_port)]
        if self.config_path:
            cmd += ["--config", self.config_path]
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                start_new_session=True,
                preexec_fn=parent_death_preexec(),  # dies with us, even on SIGKILL (Linux)
            )
        return self

    @property
    def running(self) -> bool:
        """True while the process has not exited."""
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int:
        """PID of the running process."""
        if self.proc is None:
            raise RuntimeError("worker not started")
        return self.proc.pid

    def log_text(self, since_start: bool = True) -> str:
        """The worker's output (of the current run by default)."""
        if not self.log_path.exists():
            return ""
        with open(self.log_path, "rb") as f:
            if since_start:
                f.seek(self._log_offset)
            return f.read().decode("utf-8", "replace")

    def tail(self, lines: int = 40) -> str:
        """The last lines of the current run's log."""
        return "\n".join(self.log_text().splitlines()[-lines:]) or "<empty log>"

    def wait_for_log(self, pattern: str, timeout_s: float = 60.0) -> re.Match[str]:
        """Wait until the current run's log matches ``pattern``; fail if the process exits."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            match = regex.search(self.log_text())
            if match:
                return match
            if not self.running:
                raise RuntimeError(
                    f"worker exited ({self.returncode}) before {pattern!r}:\n"
                    + self.log_text()[-4000:]
                )
            time.sleep(0.1)
        raise TimeoutError(
            f"worker log did not show {pattern!r} within {timeout_s}s:\n" + self.log_text()[-4000:]
        )

    def web_url(self, timeout_s: float = 60.0) -> str:
        """The URL the worker logged for its web server."""
        return self.wait_for_log(_URL.pattern, timeout_s).group(1)

    @property
    def returncode(self) -> int | None:
        """Exit status once exited."""
        return None if self.proc is None else self.proc.poll()

    def signal(self, sig: int) -> None:
        """Send a signal to the worker's process group."""
        if self.running:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, sig)

    def kill(self) -> None:
        """SIGKILL: the crash case."""
        self.signal(signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait(10)

    def stop(self, timeout_s: float = 15.0) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout_s``; returns the exit status."""
        return stop_all([self], timeout_s)[0]


def stop_all(workers: list[WorkerProcess], timeout_s: float = 15.0) -> list[int | None]:
    """SIGTERM every running worker at once, SIGKILL those still running after ``timeout_s``."""
    for w in workers:
        w.signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    for w in workers:
        if w.proc is not None:
            try:
                w.proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                w.signal(signal.SIGKILL)
                w.proc.wait(10)
    return [w.returncode for w in workers]
