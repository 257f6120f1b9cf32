"""A `serve-api` process for the API tests: started on a free port with a token, an
embedded store and an allow-list, its stderr (the JSON log) kept in a file."""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests
from conftest import subprocess_env

from streamforge_nb.settings import Settings

TOKEN = "test-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
StartDummy = Callable[..., subprocess.Popen[str]]


class Api:
    """A served API: its URL, a session carrying the token, its store, log and allow-list."""

    def __init__(self, url: str, home: Path, exchange_url: str) -> None:
        self.url, self.home, self.exchange_url = url, home, exchange_url
        self.store = f"local://{home / 'store'}"
        self.log = home / "serve-api.log"
        self.archives = home / "archives"
        self.session = requests.Session()
        self.session.headers.update(AUTH)

    def get(self, path: str) -> requests.Response:
        return self.session.get(self.url + path, timeout=60)

    def post(
        self, path: str, body: dict[str, Any] | None = None, **headers: str
    ) -> requests.Response:
        return self.session.post(self.url + path, json=body, headers=headers, timeout=120)


def lines_of(proc: subprocess.Popen[bytes], count: int, timeout: float = 60) -> list[str]:
    """The first `count` lines `proc` prints, or fail at `timeout`."""
    assert proc.stdout is not None
    seen = b""
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        # Raw reads: a buffered readline could hold lines select() no longer reports.
        while seen.count(b"\n") < count:
            left = deadline - time.monotonic()
            assert left > 0 and proc.poll() is None, f"serve-api printed only {seen!r}"
            if selector.select(left):
                seen += os.read(proc.stdout.fileno(), 65536)
    return seen.decode().splitlines()[:count]


@contextmanager
def serve(
    settings: Settings,
    home: Path,
    *,
    exchange_url: str = "http://127.0.0.1:9",
    env: dict[str, str] | None = None,
    args: Sequence[str] = (),
) -> Iterator[Api]:
    """Run `serve-api` with its home, store and log under `home`; stop it on exit."""
    home.mkdir(parents=True, exist_ok=True)
    api = Api("", home, exchange_url)
    api.archives.mkdir(exist_ok=True)
    environment = {
        **subprocess_env(settings),
        "STREAMFORGE_HOME": str(home),  # the local launcher's runs and Jobs
        "STREAMFORGE_API_TOKEN": TOKEN,
        **(env or {}),
    }
    command = [
        sys.executable, "-m", "streamforge_nb.cli", "serve-api", "--port", "0",
        "--store", api.store, "--allow-archives", str(api.archives),
        "--allow-base-url", exchange_url, *args,
    ]  # fmt: skip
    with api.log.open("ab") as log:
        proc = subprocess.Popen(command, env=environment, stdout=subprocess.PIPE, stderr=log)
    try:
        first = lines_of(proc, 1)[0]
        api.url = first.split(" at ", 1)[1].split()[0]
        assert TOKEN not in first
        yield api
    finally:
        proc.send_signal(signal.SIGTERM)
        # uvicorn shuts down gracefully, then re-raises the SIGTERM it caught.
        assert proc.wait(timeout=60) in (0, -signal.SIGTERM)
        assert proc.stdout is not None
        proc.stdout.close()
