"""The queue-manager API: a small ASGI app over `Workflow` and `Queue`.

Every route but `GET /openapi.json` needs `Authorization: Bearer <token>`. Errors are
`{"error": "..."}`: 400 bad input, 401 no or a wrong token, 404 an unknown queue or route,
504 a wait that ended without its answer. The library's calls block (Kafka, the store), so
each runs in a worker thread; the app keeps one `Queue` per queue id it served (its follower
thread), up to `max_queues`, and closes them at shutdown.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import re
import threading
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import orjson
from pydantic import BaseModel, ValidationError

from streamforge_nb.api import models as m
from streamforge_nb.api.openapi import openapi_document
from streamforge_nb.control.queue import Queue
from streamforge_nb.control.telemetry import ProducerState, ended, queue_status, safe_timestamp
from streamforge_nb.exceptions import (
    BrokerError,
    ConfigError,
    InvalidName,
    MessageError,
    QueueExists,
    QueueTimeout,
    StoreError,
    StreamForgeError,
)
from streamforge_nb.platform.names import check_label_value
from streamforge_nb.settings import Settings

__all__ = ["QueueManagerApp"]

log = logging.getLogger(__name__)
Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
_MAX_BODY = 1 << 20  # a start request is a few hundred bytes
_M = TypeVar("_M", bound=BaseModel)
_ROUTE = re.compile(r"^/queues/(?P<queue_id>[^/]+)(?:/(?P<action>stop|cancel|ping))?$")


class QueueManagerApp:
    """The ASGI app: `uvicorn` (or `api.server.ApiServer`) serves it."""

    def __init__(
        self,
        token: str,
        settings: Settings | None = None,
        *,
        store: str | None = None,
        max_queues: int = 64,
    ) -> None:
        """`token`: what every request's bearer must be; `store`: the queue-state store
        (default: the settings'), where workflows started here record themselves."""
        if not token or not token.strip():
            raise ConfigError("the queue-manager API needs a non-empty token")
        self._token = token.encode()
        self.settings = settings or Settings.from_env()
        self.store = store
        self.max_queues = max_queues
        self._queues: OrderedDict[str, tuple[Queue, list[str]]] = OrderedDict()
        self._lock = threading.Lock()
        self._document = orjson.dumps(openapi_document())

    def __repr__(self) -> str:  # never the token
        return f"QueueManagerApp({self.settings.describe()})"

    # -- ASGI --------------------------------------------------------------------------------
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] == "http":
            status, body = await self._answer(scope, receive)
            headers = [(b"content-type", b"application/json"), (b"cache-control", b"no-store")]
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": body})

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await asyncio.to_thread(self.close)
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _answer(self, scope: Scope, receive: Receive) -> tuple[int, bytes]:
        method, path = scope["method"], scope["path"]
        if method == "GET" and path == "/openapi.json":
            return 200, self._document
        if not self._authorized(scope):
            return 401, _error("missing or wrong bearer token (Authorization: Bearer <token>)")
        body = await _read_body(receive)
        if body is None:
            return 400, _error(f"request body larger than {_MAX_BODY} bytes")
        try:
            status, model = await asyncio.to_thread(self._route, method, path, body)
        except Exception as exc:
            status, text = _classify(exc)
            if status == 500:
                log.exception("%s %s failed", method, path)
            return status, _error(text)
        return status, model.model_dump_json(by_alias=True).encode()

    def _authorized(self, scope: Scope) -> bool:
        given = dict(scope.get("headers") or ()).get(b"authorization", b"")
        scheme, _, token = given.partition(b" ")
        return scheme.lower() == b"bearer" and hmac.compare_digest(token.strip(), self._token)

    # -- routes (in a worker thread) ---------------------------------------------------------
    def _route(self, method: str, path: str, body: bytes) -> tuple[int, BaseModel]:
        if path == "/queues" and method == "POST":
            return 201, self.start(_parse(m.StartRequest, body))
        if path == "/queues" and method == "GET":
            return 200, self.queues()
        if path == "/queues":
            return 405, m.ErrorResponse(error=f"{method} is not allowed on {path}")
        match = _ROUTE.match(path)
        if match is None:
            return 404, m.ErrorResponse(error=f"no route {path}")
        queue_id, action = match["queue_id"], match["action"]
        allowed = (method, action is None) in {("GET", True), ("POST", False)}
        if not allowed:
            return 405, m.ErrorResponse(error=f"{method} is not allowed on {path}")
        # The body is checked before the queue is looked up: bad input is a 400 either way.
        request = {
            None: None, "stop": m.StopRequest, "cancel": m.CancelRequest, "ping": m.PingRequest,
        }[action]  # fmt: skip
        parsed = _parse(request, body) if request is not None else None
        found = self._queue(queue_id)
        if found is None:
            return 404, m.ErrorResponse(
                error=f"unknown queue {queue_id}: no queue-state record and no telemetry"
            )
        queue, targets = found
        if isinstance(parsed, m.StopRequest):
            return 200, self.stop(queue, parsed)
        if isinstance(parsed, m.CancelRequest):
            return 200, self.cancel(queue, parsed)
        if isinstance(parsed, m.PingRequest):
            return 200, self.ping(queue, parsed)
        return 200, self.detail(queue, targets)

    def start(self, request: m.StartRequest) -> m.StartResponse:
        """Validate, then launch the candle workflow; keep its `Queue`."""
        from streamforge_nb.workflow.plan import DEFAULT_IMAGE, Workflow

        workflow = Workflow.candles(
            request.symbol, request.interval, request.time_range, source=request.source,
            base_url=request.base_url, archives=request.archives, store=self.store,
            namespace=request.namespace, image=request.image or DEFAULT_IMAGE,
            sinks=request.sinks, partitions=request.partitions, settings=self.settings,
        )  # fmt: skip
        plan = workflow.plan()
        options = {"namespace": request.namespace} if request.launcher == "kubernetes" else {}
        queue = workflow.launch(request.launcher, **options)
        self._keep(plan.queue_id, queue, [s.target for s in plan.steps])
        return m.StartResponse(
            queue_id=plan.queue_id,
            data_topic=plan.data_topic,
            collection=plan.collection,
            targets=[s.target for s in plan.steps],
            producers=[s.producer_id for s in plan.steps],
            jobs=[s.job_name for s in plan.steps],
            launcher=request.launcher,
        )

    def queues(self) -> m.QueueList:
        """Every launched queue of the store, refreshed from telemetry, oldest first."""
        from streamforge_nb.control.state import refresh

        with self._open_store() as store:
            records = refresh(store, self.settings)
        summaries = [_summary(r) for r in records if isinstance(r.get("queue_id"), str)]
        return m.QueueList(queues=sorted(summaries, key=lambda s: s.created_at or 0.0))

    def detail(self, queue: Queue, targets: Sequence[str]) -> m.QueueDetail:
        """The queue's status and each producer's."""
        states = queue.producers()
        return m.QueueDetail(
            queue_id=queue.queue_id,
            status=queue_status(states, targets),
            ended=ended(states, targets),
            producers=[_producer(s) for s in states.values()],
        )

    def stop(self, queue: Queue, request: m.StopRequest) -> m.StopResponse:
        """Send `stop`; return who acknowledged (none within the timeout: `QueueTimeout`)."""
        acked = queue.stop(request.target, timeout=request.timeout)
        return m.StopResponse(queue_id=queue.queue_id, acknowledged=acked)

    def cancel(self, queue: Queue, request: m.CancelRequest) -> m.CancelResponse:
        """Stop for sure (`Queue.cancel`); return how each producer ended."""
        frame = queue.cancel(request.grace, kill_grace=request.kill_grace, target=request.target)
        producers = [
            m.ProducerCancel(
                producer=str(producer),
                status=str(row["status"]),
                cancel=_text(row.get("cancel")),
                message=_text(row.get("message")),
            )
            for producer, row in frame.iterrows()
        ]
        return m.CancelResponse(queue_id=queue.queue_id, producers=producers)

    def ping(self, queue: Queue, request: m.PingRequest) -> m.PingResponse:
        """Send `ping`; return the pongs (none within the timeout: `QueueTimeout`)."""
        replies = queue.ping(request.target, timeout=request.timeout, expect=request.expect)
        pongs = [
            m.PongItem(producer=r.producer, round_trip_ms=r.round_trip_s * 1000, pong=r.pong)
            for r in replies
        ]
        return m.PingResponse(queue_id=queue.queue_id, pongs=pongs)

    # -- queues ------------------------------------------------------------------------------
    def _queue(self, queue_id: str) -> tuple[Queue, list[str]] | None:
        """The kept `Queue` of `queue_id`, or a new one if the store or telemetry knows it."""
        try:  # any queue the CLI can address: also a dummy service's `wf-dummy-...`
            check_label_value(queue_id)
        except InvalidName:
            raise InvalidName(
                f"invalid queue id {queue_id!r}: 1..63 characters of A-Z a-z 0-9 . _ -, starting "
                "and ending with a letter or digit (e.g. wf-btcusdt-api_candles_1m-20240801-abc123)"
            ) from None
        with self._lock:
            kept = self._queues.get(queue_id)
            if kept is not None:
                self._queues.move_to_end(queue_id)
                return kept
        with self._open_store() as store:
            record = store.queue_state(queue_id)
        since = safe_timestamp(record.get("created_at")) if record else None
        queue = Queue(queue_id, self.settings, store=self.store, since=since)
        # A queue someone else started (a dummy service) is known from its telemetry alone.
        if record is None and queue.status().empty:
            queue.close()
            return None
        return self._keep(queue_id, queue, list((record or {}).get("targets") or ()))

    def _keep(self, queue_id: str, queue: Queue, targets: list[str]) -> tuple[Queue, list[str]]:
        with self._lock:
            kept = self._queues.setdefault(queue_id, (queue, targets))
            self._queues.move_to_end(queue_id)
            evicted = []
            while len(self._queues) > self.max_queues:
                evicted.append(self._queues.popitem(last=False)[1][0])
        if kept[0] is not queue:  # another request opened it first
            evicted.append(queue)
        for old in evicted:
            old.close()
        return kept

    def _open_store(self) -> Any:
        from streamforge_nb.store.candles import CandleStore

        return CandleStore.open(self.store or self.settings.arango_url, settings=self.settings)

    def close(self) -> None:
        """Close every kept `Queue` (their follower threads and Kafka clients)."""
        with self._lock:
            queues = [queue for queue, _ in self._queues.values()]
            self._queues.clear()
        for queue in queues:
            queue.close()


async def _read_body(receive: Receive) -> bytes | None:
    """The request's body; None once it grows past `_MAX_BODY`."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > _MAX_BODY:
            return None
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


def _parse(model: type[_M], body: bytes) -> _M:
    """Return the request's model; an empty body is the model's defaults."""
    return model.model_validate_json(body or b"{}")


def _classify(exc: Exception) -> tuple[int, str]:
    """Return the status and the sentence for an exception of the library."""
    if isinstance(exc, ValidationError):  # a request body
        # Field and reason only: the input itself is not echoed back.
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors()
        )
        return 400, f"invalid {exc.title}: {problems}"
    if isinstance(exc, QueueExists):  # a second launch of one queue id
        return 409, str(exc)
    if isinstance(exc, InvalidName | ConfigError | MessageError):
        return 400, str(exc)
    if isinstance(exc, QueueTimeout):
        return 504, str(exc)
    if isinstance(exc, BrokerError | StoreError):
        return 502, f"{type(exc).__name__}: {exc}"
    if isinstance(exc, StreamForgeError):
        return 500, str(exc)
    return 500, f"internal error ({type(exc).__name__}); see the server's log"


def _error(text: str) -> bytes:
    return m.ErrorResponse(error=text).model_dump_json().encode()


def _text(value: Any) -> str | None:
    return None if value is None or value != value else str(value)  # NaN: a missing cell


def _producer(state: ProducerState) -> m.ProducerStatus:
    return m.ProducerStatus(
        producer=state.producer,
        status=state.status,
        records_written=state.records_written,
        last_seen=state.last_seen,
        message=state.message,
        dead_letters=state.dead_letters,
        anomalies=state.anomalies,
    )


def _summary(record: dict[str, Any]) -> m.QueueSummary:
    """A queue-state record without what a client has no use for (parameters, launcher)."""
    written = record.get("records_written")
    return m.QueueSummary(
        queue_id=record["queue_id"],
        symbol=record.get("symbol"),
        type=record.get("type"),
        status=str(record.get("status") or "launched"),
        records_written=written if isinstance(written, int) else 0,
        targets=[str(t) for t in record.get("targets") or ()],
        created_at=safe_timestamp(record.get("created_at")),
        updated_at=safe_timestamp(record.get("updated_at")),
        error_message=_text(record.get("error_message")),
    )
