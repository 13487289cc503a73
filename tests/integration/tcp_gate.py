"""A TCP relay to a real server whose client-to-server direction can be held.

Chaos tests use it to keep a request in flight on purpose: the client has sent it, the server
has not seen it yet. Nothing is faked - bytes go to the real server once the gate is released.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from urllib.parse import urlsplit, urlunsplit

_POLL_S = 0.05


class TcpGate:
    """Relay ``127.0.0.1:<port>`` to ``host:port``; ``hold()`` stops what clients send."""

    def __init__(self, host: str, port: int, url: str = "") -> None:
        self.target = (host, port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self.url = url
        self._open = threading.Event()
        self._open.set()
        self._lock = threading.Lock()
        self._held = bytearray()  # what clients sent while held, for tests to inspect
        self._sockets: list[socket.socket] = []
        self._closed = False
        threading.Thread(target=self._accept, name=f"tcp-gate-{self.port}", daemon=True).start()

    @classmethod
    def for_url(cls, url: str) -> TcpGate:
        """A gate to the server of ``url`` (``scheme://[auth@]host:port/...``) and its own URL."""
        parts = urlsplit(url)
        if parts.hostname is None or parts.port is None:
            raise ValueError(f"{url!r} names no host and port")
        gate = cls(parts.hostname, parts.port)
        auth = parts.netloc.rpartition("@")[0]
        netloc = f"{auth}@127.0.0.1:{gate.port}" if auth else f"127.0.0.1:{gate.port}"
        gate.url = urlunsplit(parts._replace(netloc=netloc))
        return gate

    def hold(self) -> None:
        """Keep everything clients send from now on until ``release()``."""
        with self._lock:
            self._held.clear()
        self._open.clear()

    def release(self) -> None:
        """Forward what was held (in order) and let traffic flow again."""
        self._open.set()

    def held(self) -> bytes:
        """The bytes clients sent since the last ``hold()``."""
        with self._lock:
            return bytes(self._held)

    def close(self) -> None:
        self._closed = True
        self._open.set()
        with contextlib.suppress(OSError):
            self._listener.close()
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for s in sockets:
            with contextlib.suppress(OSError):
                s.close()

    def __enter__(self) -> TcpGate:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            with self._lock:
                self._sockets += [client, server]
            threading.Thread(target=self._upstream, args=(client, server), daemon=True).start()
            threading.Thread(target=self._downstream, args=(server, client), daemon=True).start()

    def _upstream(self, client: socket.socket, server: socket.socket) -> None:
        """Client to server; while held, keep reading (and recording) but do not forward."""
        pending = bytearray()
        client.settimeout(_POLL_S)
        eof = False
        try:
            while not self._closed:
                if not eof:
                    try:
                        data = client.recv(65536)
                    except TimeoutError:
                        data = None
                    if data == b"":
                        eof = True
                    elif data:
                        pending += data
                        if not self._open.is_set():
                            with self._lock:
                                self._held += data
                if pending and self._open.is_set():
                    server.sendall(pending)
                    pending.clear()
                if eof:
                    if pending:
                        self._open.wait(_POLL_S)
                        continue
                    break
        except OSError:
            pass
        with contextlib.suppress(OSError):
            server.shutdown(socket.SHUT_WR)

    def _downstream(self, server: socket.socket, client: socket.socket) -> None:
        try:
            while data := server.recv(65536):
                client.sendall(data)
        except OSError:
            pass
        with contextlib.suppress(OSError):
            client.shutdown(socket.SHUT_WR)
