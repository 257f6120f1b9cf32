"""`ApiServer`: uvicorn serving the queue-manager app on a socket bound up front.

Binding first means port 0 works (the URL is known before serving) and a taken port fails
at once, naming it. `serve_forever()` blocks (the CLI, Ctrl-C stops it); `start()` serves
from a thread (tests, notebooks) until `stop()`.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from types import TracebackType
from typing import Any

from streamforge_nb.exceptions import ConfigError, StreamForgeError

__all__ = ["ApiServer", "is_loopback"]


def is_loopback(host: str) -> bool:
    """Tell whether `host` is a loopback address (127.0.0.0/8, ::1) or `localhost`."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class ApiServer:
    """Serve an ASGI app with uvicorn on `host`:`port` (0: a free port)."""

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 8080) -> None:
        import uvicorn

        self.app = app
        family, kind, proto, _, address = socket.getaddrinfo(
            host.strip("[]"), port, type=socket.SOCK_STREAM
        )[0]
        self._socket = socket.socket(family, kind, proto)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self._socket.bind(address)
            # Listening now: a client that reads the printed URL before uvicorn runs waits
            # in the backlog instead of being refused.
            self._socket.listen(128)
        except OSError as exc:
            self._socket.close()
            raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
        self.host, self.port = host, int(self._socket.getsockname()[1])
        config = uvicorn.Config(app, log_level="warning", lifespan="on", access_log=False)
        self._server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        return f"ApiServer({self.url})"

    @property
    def url(self) -> str:
        """The server's base URL (no token: that goes in the Authorization header)."""
        host = f"[{self.host.strip('[]')}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def serve_forever(self) -> None:
        """Serve in this thread until SIGINT or SIGTERM."""
        try:
            self._server.run(sockets=[self._socket])
        finally:
            self._socket.close()

    def start(self, timeout: float = 30.0) -> ApiServer:
        """Serve from a thread; return once the server accepts requests (or raise)."""
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, name="api-server"
        )
        self._thread.daemon = True
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise StreamForgeError(f"the API server at {self.url} did not start")
            time.sleep(0.02)
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Stop serving (the app closes its queues); wait up to `timeout` s for it."""
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
        self._socket.close()

    def __enter__(self) -> ApiServer:
        return self if self._thread is not None else self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
