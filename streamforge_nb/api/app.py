"""The queue-manager API: FastAPI routes over `api.service.QueueService`.

FastAPI gives the routing (405 with `Allow`), request validation from `api.models` and the
OpenAPI document; `api.edge` adds the body limit (413), the access log and the metrics.
Every route but `/openapi.json`, `/healthz` and `/metrics` needs `Authorization: Bearer
<token>`. Every error is RFC 9457 `application/problem+json`: 401 (with `WWW-Authenticate`),
404, 405, 409, 413, 422 (bad input, each field named), 5xx for the server's own faults (502
the broker or store, 503 not configured for it or a history still being read, 504 a wait
that ended without its answer).
"""

from __future__ import annotations

import hmac
import logging
from datetime import datetime
from http import HTTPStatus
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Header, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException
from starlette.routing import Match

from streamforge_nb import __version__
from streamforge_nb.api import models as m
from streamforge_nb.api.allow import AllowList
from streamforge_nb.api.document import ROUTE_PROBLEMS, finish_document
from streamforge_nb.api.edge import PROBLEM_JSON, ApiMetrics, Edge, Receive, Scope, Send
from streamforge_nb.api.service import QueueService
from streamforge_nb.exceptions import (
    ApiProblem,
    BrokerError,
    ConfigError,
    InputProblem,
    QueueExists,
    QueueTimeout,
    StoreError,
    StreamForgeError,
)
from streamforge_nb.settings import Settings

__all__ = ["MAX_BODY", "QueueManagerApp"]

log = logging.getLogger(__name__)
MAX_BODY = 1 << 20
"""Request bodies over this many bytes are refused (413): a start request is ~300 bytes."""
QueueId = Annotated[
    str, Path(description="e.g. wf-btcusdt-api_candles_1m-20240801-abc123", max_length=253)
]
# Module-level: FastAPI resolves the routes' (string) annotations in this module's globals.
Credentials = Annotated[
    HTTPAuthorizationCredentials | None, Depends(HTTPBearer(auto_error=False, scheme_name="bearer"))
]
_METRICS_200: dict[int | str, dict[str, Any]] = {
    200: {"description": "Prometheus text format.",
          "content": {"text/plain": {"schema": {"type": "string"}}}},
}  # fmt: skip
StatusName = Literal[
    "launched", "running", "error", "failed", "interrupted", "finished_with_dead_letters",
    "finished",
]  # fmt: skip


class QueueManagerApp:
    """The ASGI app: `uvicorn` (or `api.server.ApiServer`) serves it."""

    def __init__(
        self,
        token: str,
        settings: Settings | None = None,
        *,
        store: str | None = None,
        allow: AllowList | None = None,
        max_queues: int = 64,
        max_body: int = MAX_BODY,
    ) -> None:
        """`token`: what every request's bearer must be; `store`: the queue-state store
        (default: the settings'); `allow`: the archive places and base URLs clients may name."""
        if not token or not token.strip():
            raise ConfigError("the queue-manager API needs a non-empty token")
        self._token = token.encode()
        self.settings = settings or Settings.from_env()
        self.service = QueueService(self.settings, store=store, allow=allow, max_queues=max_queues)
        self.metrics = ApiMetrics()
        self.fastapi = _build(self)
        self._asgi = Edge(self.fastapi, self.metrics, max_body)

    def __repr__(self) -> str:  # never the token
        return f"QueueManagerApp({self.settings.describe()})"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._asgi(scope, receive, send)

    def authorize(self, credentials: HTTPAuthorizationCredentials | None) -> None:
        """Raise 401 unless the bearer token is the server's."""
        given = credentials.credentials.encode() if credentials is not None else b""
        if credentials is not None and hmac.compare_digest(given.strip(), self._token):
            return
        challenge = 'Bearer realm="streamforge-nb"'
        if credentials is not None:
            challenge += ', error="invalid_token"'
        raise ApiProblem(
            401,
            "missing or wrong bearer token (Authorization: Bearer <token>)",
            headers={"WWW-Authenticate": challenge},
        )

    def document(self, server_url: str) -> dict[str, Any]:
        """The OpenAPI document, naming `server_url` as the server."""
        return finish_document(self.fastapi.openapi(), server_url)

    def close(self) -> None:
        """Close every kept `Queue` (their follower threads and Kafka clients)."""
        self.service.close()


def _problem(
    status: int, detail: str, request: Request, headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:  # fmt: skip
    body = m.Problem(
        title=HTTPStatus(status).phrase, status=status, detail=detail,
        instance=request.url.path, **extra,
    )  # fmt: skip
    return JSONResponse(
        body.model_dump(mode="json", exclude_none=True),
        status_code=status,
        headers={"cache-control": "no-store", **(headers or {})},
        media_type=PROBLEM_JSON,
    )


def _library_status(exc: Exception) -> int:
    """The status of an exception the library raised while serving a request."""
    if isinstance(exc, QueueExists):  # a second launch of one queue id
        return 409
    if isinstance(exc, QueueTimeout):
        return 504
    if isinstance(exc, BrokerError | StoreError):
        return 502
    if isinstance(exc, ConfigError):  # the server is not set up for it (no kubeconfig)
        return 503
    return 500


def _handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiProblem)
    async def api_problem(request: Request, exc: ApiProblem) -> JSONResponse:
        return _problem(exc.status, exc.detail, request, exc.headers, **exc.extra)

    @app.exception_handler(InputProblem)
    async def input_problem(request: Request, exc: InputProblem) -> JSONResponse:
        field = m.FieldProblem(field=exc.field, message=exc.message)
        return _problem(422, f"invalid {exc.field}: {exc.message}", request, errors=[field])

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        # Where and why only: the input itself is not echoed back.
        fields = [
            m.FieldProblem(field=".".join(map(str, e["loc"])) or "body", message=e["msg"])
            for e in exc.errors()
        ]
        detail = "invalid request: " + "; ".join(f"{f.field}: {f.message}" for f in fields)
        return _problem(422, detail, request, errors=fields)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        if exc.status_code == 400:  # FastAPI's answer to a body it cannot decode (not UTF-8)
            field = m.FieldProblem(field="body", message="not JSON text (UTF-8)")
            return _problem(422, "invalid body: not JSON text (UTF-8)", request, errors=[field])
        detail = {
            404: f"no route {request.url.path}",
            405: f"{request.method} is not allowed on {request.url.path}",
        }.get(exc.status_code, str(exc.detail))
        headers = dict(exc.headers or {})
        if exc.status_code == 405:  # Starlette names only the first route the path matched
            headers["Allow"] = ", ".join(_allowed(request))
        return _problem(exc.status_code, detail, request, headers)

    # A handler for the library's errors, not for `Exception`: Starlette re-raises what
    # the latter handles after answering, and uvicorn then drops the client's connection.
    @app.exception_handler(StreamForgeError)
    async def library_error(request: Request, exc: StreamForgeError) -> JSONResponse:
        status = _library_status(exc)
        if status == 500:
            log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
            text = f"internal error ({type(exc).__name__}); see the server's log"
        else:
            log.warning("%s %s: %s %s", request.method, request.url.path, status, exc)
            text = f"{type(exc).__name__}: {exc}"
        return _problem(status, text, request)

    @app.exception_handler(Exception)
    async def failed(request: Request, exc: Exception) -> JSONResponse:
        log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        text = f"internal error ({type(exc).__name__}); see the server's log"
        return _problem(500, text, request)


def _allowed(request: Request) -> list[str]:
    """Every method some route of the request's path has."""
    methods: set[str] = set()
    for route in request.app.router.routes:
        match, _ = route.matches(request.scope)
        if match is not Match.NONE:
            methods.update(getattr(route, "methods", None) or ())
    return sorted(methods)


def _build(owner: QueueManagerApp) -> FastAPI:
    """The FastAPI app of `owner`: its routes, security and error handlers."""
    service = owner.service

    def authorized(credentials: Credentials) -> None:
        owner.authorize(credentials)

    app = FastAPI(
        title="streamforge-nb queue-manager API",
        version=__version__,
        description=(
            "The operations streamforge-nb performs as the platform's queue-manager would, "
            "over HTTP: start a workflow, list queues, a queue's status, stop, cancel, ping. "
            "Served by `streamforge-nb serve-api`; not the platform's queue-manager service."
        ),
        openapi_url=None, docs_url=None, redoc_url=None,
    )  # fmt: skip
    app.router.lifespan_context = _lifespan(owner)
    _handlers(app)
    auth = [Depends(authorized)]
    problems = ROUTE_PROBLEMS

    @app.get("/openapi.json", include_in_schema=False)
    def openapi(request: Request) -> JSONResponse:
        return JSONResponse(owner.document(str(request.base_url).rstrip("/")))

    @app.get("/healthz", operation_id="health", summary="Tell that the server is up (no token).",
             responses=problems["health"])  # fmt: skip
    def health() -> m.Health:
        return m.Health(version=__version__)

    @app.get("/metrics", operation_id="metrics", summary="Prometheus metrics (no token).",
             response_class=Response,
             responses={**_METRICS_200, **problems["metrics"]})  # fmt: skip
    def metrics() -> Response:
        owner.metrics.queues_kept.set(service.kept)
        return Response(generate_latest(owner.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.post("/queues", operation_id="startQueue", status_code=201, dependencies=auth,
              summary="Start the candle workflow (loader -> sink).",
              responses=problems["startQueue"])  # fmt: skip
    def start(
        body: m.StartRequest,
        response: Response,
        idempotency_key: Annotated[
            str | None,
            Header(min_length=1, max_length=255, description="Same key and body: the same queue."),
        ] = None,
    ) -> m.StartResponse:
        started, new = service.start(body, idempotency_key)
        response.headers["Location"] = f"/queues/{started.queue_id}"
        if new:
            owner.metrics.started.inc()
        else:
            response.headers["Idempotent-Replayed"] = "true"
        return started

    @app.get("/queues", operation_id="listQueues", dependencies=auth,
             summary="List launched queues, oldest first, a page at a time.",
             responses=problems["listQueues"])  # fmt: skip
    def queues(
        limit: Annotated[int, Query(ge=1, le=1000, description="Queues per page.")] = 100,
        cursor: Annotated[
            str | None, Query(max_length=512, description="The last page's next_cursor.")
        ] = None,
        status: Annotated[StatusName | None, Query(description="Only queues with it.")] = None,
        symbol: Annotated[str | None, Query(max_length=40, description="e.g. BTCUSDT")] = None,
        interval: Annotated[str | None, Query(max_length=8, description="e.g. 1m")] = None,
        created_after: Annotated[
            datetime | None, Query(description="ISO 8601 (UTC if no offset): created later.")
        ] = None,
    ) -> m.QueueList:
        return service.queues(
            limit=limit, cursor=cursor, status=status, symbol=symbol, interval=interval,
            created_after=created_after,
        )  # fmt: skip

    @app.get("/queues/{queue_id}", operation_id="getQueue", dependencies=auth,
             summary="A queue's status per producer.",
             responses=problems["getQueue"])  # fmt: skip
    def detail(queue_id: QueueId) -> m.QueueDetail:
        queue, targets = service.queue(queue_id)
        return service.detail(queue, targets)

    @app.post("/queues/{queue_id}/stop", operation_id="stopQueue", dependencies=auth,
              summary="Send `stop`; wait for the acks (an ended queue: 409).",
              responses=problems["stopQueue"])  # fmt: skip
    def stop(queue_id: QueueId, body: m.StopRequest | None = None) -> m.StopResponse:
        queue, targets = service.queue(queue_id)
        return service.stop(queue, targets, body or m.StopRequest.model_validate({}))

    @app.post("/queues/{queue_id}/cancel", operation_id="cancelQueue", dependencies=auth,
              summary="Send `stop`, then delete the queue's Jobs after the grace.",
              responses=problems["cancelQueue"])  # fmt: skip
    def cancel(queue_id: QueueId, body: m.CancelRequest | None = None) -> m.CancelResponse:
        queue, _ = service.queue(queue_id)
        return service.cancel(queue, body or m.CancelRequest.model_validate({}))

    @app.post("/queues/{queue_id}/ping", operation_id="pingQueue", dependencies=auth,
              summary="Send `ping`; return the pongs.",
              responses=problems["pingQueue"])  # fmt: skip
    def ping(queue_id: QueueId, body: m.PingRequest | None = None) -> m.PingResponse:
        queue, _ = service.queue(queue_id)
        return service.ping(queue, body or m.PingRequest.model_validate({}))

    return app


def _lifespan(owner: QueueManagerApp) -> Any:
    from contextlib import asynccontextmanager

    from anyio import to_thread

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> Any:
        yield
        await to_thread.run_sync(owner.close)

    return lifespan
