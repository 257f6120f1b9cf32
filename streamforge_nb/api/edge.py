"""What every request passes through before the routes: the body limit, the access log and
the request metrics (one ASGI middleware, so a refused body is logged and counted too).

The access log is one JSON line per request on the `streamforge_nb.api.access` logger:
method, path, route, status, duration, response bytes, client address, request id. Never a
header and never the query string's values: the bearer token cannot reach it.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["ApiMetrics", "Edge", "problem_body"]

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

access_log = logging.getLogger("streamforge_nb.api.access")
PROBLEM_JSON = "application/problem+json"


class ApiMetrics:
    """The API's Prometheus metrics, in a registry of its own (one per app)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "streamforge_api_requests", "HTTP requests answered, by route and status.",
            ["method", "route", "status"], registry=self.registry,
        )  # fmt: skip
        self.seconds = Histogram(
            "streamforge_api_request_seconds", "Time to answer a request, by route.",
            ["method", "route"], registry=self.registry,
        )  # fmt: skip
        self.queues_kept = Gauge(
            "streamforge_api_queues_kept", "Queues whose telemetry the server follows.",
            registry=self.registry,
        )  # fmt: skip
        self.started = Counter(
            "streamforge_api_queues_started", "Queues started through the API.",
            registry=self.registry,
        )  # fmt: skip


def problem_body(status: int, title: str, detail: str, instance: str | None) -> bytes:
    """An RFC 9457 problem document."""
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail}
    return orjson.dumps(body | ({"instance": instance} if instance else {}))


class Edge:
    """Refuse bodies over `max_body` bytes (413), log and count every request."""

    def __init__(self, app: Any, metrics: ApiMetrics, max_body: int) -> None:
        self.app: ASGIApp = app  # FastAPI's signature spells the same types otherwise
        self.metrics, self.max_body = metrics, max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        answer = {"status": 500, "bytes": 0}
        request_id = _header(scope, b"x-request-id") or uuid.uuid4().hex

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                answer["status"] = message["status"]
                message = dict(message)
                message["headers"] = [
                    *message.get("headers", ()),
                    (b"x-request-id", request_id.encode()),
                ]
            elif message["type"] == "http.response.body":
                answer["bytes"] += len(message.get("body", b""))
            await send(message)

        try:
            body = await self._body(scope, receive)
            if body is None:
                await _too_large(scope, sending, self.max_body)
            else:
                await self.app(scope, _replay(body, receive), sending)
        finally:
            self._record(scope, answer, time.perf_counter() - started, request_id)

    async def _body(self, scope: Scope, receive: Receive) -> bytes | None:
        """The whole request body, or None once it is over the limit (read no further)."""
        declared = _header(scope, b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body:
            return None
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                return None
            chunks.append(chunk)
            if not message.get("more_body"):
                break
        return b"".join(chunks)

    def _record(self, scope: Scope, answer: dict[str, int], seconds: float, rid: str) -> None:
        route = scope.get("route")
        template = getattr(route, "path", None) or "unmatched"
        method, status = scope["method"], answer["status"]
        self.metrics.requests.labels(method, template, str(status)).inc()
        self.metrics.seconds.labels(method, template).observe(seconds)
        client = scope.get("client") or ("", 0)
        access_log.info(
            "%s %s %s",
            method,
            scope["path"],
            status,
            extra={
                "http_method": method,
                "path": scope["path"],
                "route": template,
                "status": status,
                "duration_ms": round(seconds * 1000, 2),
                "bytes": answer["bytes"],
                "client": f"{client[0]}:{client[1]}",
                "request_id": rid,
            },
        )


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers") or ():
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


def _replay(body: bytes, receive: Receive) -> Receive:
    """A `receive` that gives the buffered body once, then waits on the real one."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # http.disconnect, for a streaming response

    return replay


async def _too_large(scope: Scope, send: Send, limit: int) -> None:
    body = problem_body(
        413, "Content Too Large", f"the request body is over {limit} bytes", scope["path"]
    )
    headers = [(b"content-type", PROBLEM_JSON.encode()), (b"connection", b"close")]
    await send({"type": "http.response.start", "status": 413, "headers": headers})
    await send({"type": "http.response.body", "body": body})
