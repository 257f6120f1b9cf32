"""The queue manager's operations over `Workflow` and `Queue`, as the HTTP routes call them.

Every call blocks (Kafka, the store, the launcher): the app runs each in a worker thread. The
service keeps one `Queue` per queue id it served (its telemetry follower), up to
`max_queues`, and the answers of recent `Idempotency-Key`s, both in memory: a restarted
server forgets the keys, never the queues (those are in the store and the telemetry).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import threading
from collections import OrderedDict
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from streamforge_nb.api import models as m
from streamforge_nb.api.allow import AllowList
from streamforge_nb.control.queue import Queue
from streamforge_nb.control.telemetry import ProducerState, ended, queue_status, safe_timestamp
from streamforge_nb.exceptions import (
    ApiProblem,
    InputProblem,
    InvalidName,
    NotAllowed,
    StreamForgeError,
)
from streamforge_nb.platform.names import check_label_value
from streamforge_nb.settings import Settings

__all__ = ["HISTORY_WAIT_S", "QueueService"]

HISTORY_WAIT_S = 30.0
"""How long a request waits for a queue's telemetry history before answering 503."""
_KEYS_KEPT = 1024


def _utc(value: Any) -> datetime | None:
    seconds = safe_timestamp(value)
    return None if seconds is None else datetime.fromtimestamp(seconds, UTC)


def _text(value: Any) -> str | None:
    return None if value is None or value != value else str(value)  # NaN: a missing cell


class QueueService:
    """Start, list, look at, stop, cancel and ping queues; keep their `Queue`s."""

    def __init__(
        self,
        settings: Settings,
        *,
        store: str | None = None,
        allow: AllowList | None = None,
        max_queues: int = 64,
    ) -> None:
        self.settings, self.store, self.max_queues = settings, store, max_queues
        self.allow = allow or AllowList()
        self._queues: OrderedDict[str, tuple[Queue, list[str]]] = OrderedDict()
        self._lock = threading.Lock()
        self._keys: OrderedDict[str, tuple[str, m.StartResponse]] = OrderedDict()
        self._key_locks: dict[str, threading.Lock] = {}

    # -- start -------------------------------------------------------------------------------
    def start(
        self, request: m.StartRequest, key: str | None = None
    ) -> tuple[m.StartResponse, bool]:
        """Start the candle workflow once per `key`; return it and whether it is new."""
        if key is None:
            return self._start(request), True
        fingerprint = hashlib.sha256(request.model_dump_json().encode()).hexdigest()
        with self._lock:
            key_lock = self._key_locks.setdefault(key, threading.Lock())
        with key_lock:  # a retry racing the first request waits for its answer
            with self._lock:
                kept = self._keys.get(key)
            if kept is not None:
                if kept[0] != fingerprint:
                    raise ApiProblem(
                        409,
                        f"Idempotency-Key {key!r} was used for another request body "
                        f"(queue {kept[1].queue_id}); use a new key for a new queue",
                    )
                return kept[1], False
            started = self._start(request)
            with self._lock:
                self._keys[key] = (fingerprint, started)
                while len(self._keys) > _KEYS_KEPT:
                    old, _ = self._keys.popitem(last=False)
                    self._key_locks.pop(old, None)
            return started, True

    def _start(self, request: m.StartRequest) -> m.StartResponse:
        from streamforge_nb.workflow.plan import DEFAULT_IMAGE, Workflow

        try:  # paths and URLs the server did not allow: refused before anything is planned
            self.allow.check_archives(request.archives)
            self.allow.check_base_url(request.base_url)
        except NotAllowed as exc:
            raise InputProblem(exc.field, exc.message) from None
        try:  # everything here checks the client's input and has no side effect
            workflow = Workflow.candles(
                request.symbol, request.interval, request.time_range, source=request.source,
                base_url=request.base_url, archives=request.archives, store=self.store,
                namespace=request.namespace, image=request.image or DEFAULT_IMAGE,
                sinks=request.sinks, partitions=request.partitions, settings=self.settings,
            )  # fmt: skip
            plan = workflow.plan()
        except (StreamForgeError, ValueError) as exc:
            raise InputProblem("body", str(exc)) from None
        options = {"namespace": request.namespace} if request.launcher == "kubernetes" else {}
        # From here on a failure is the server's (no kubeconfig, broker down): 5xx, not 4xx.
        queue = workflow.launch(request.launcher, **options)
        self._keep(plan.queue_id, queue, [s.target for s in plan.steps])
        return m.StartResponse.from_plan(plan, request.launcher)

    # -- list --------------------------------------------------------------------------------
    def queues(
        self,
        *,
        limit: int,
        cursor: str | None = None,
        status: str | None = None,
        symbol: str | None = None,
        interval: str | None = None,
        created_after: datetime | None = None,
    ) -> m.QueueList:
        """One page of the launched queues matching the filters, oldest first."""
        from streamforge_nb.control.state import refresh

        after = _decode_cursor(cursor) if cursor else None
        with self._open_store() as store:
            records = refresh(store, self.settings)
        summaries = sorted(
            (_summary(r) for r in records if isinstance(r.get("queue_id"), str)), key=_order
        )
        if created_after is not None and created_after.tzinfo is None:
            created_after = created_after.replace(tzinfo=UTC)  # as documented: no offset is UTC
        since = created_after.timestamp() if created_after is not None else None
        chosen = [
            s
            for s in summaries
            if (status is None or s.status == status)
            and (symbol is None or (s.symbol or "").upper() == symbol.upper())
            and (interval is None or s.interval == interval)
            and (since is None or (s.created_at is not None and s.created_at.timestamp() > since))
            and (after is None or _order(s) > after)
        ]
        page = chosen[:limit]
        more = len(chosen) > limit
        return m.QueueList(
            queues=page, next_cursor=_encode_cursor(_order(page[-1])) if more else None
        )

    # -- one queue ---------------------------------------------------------------------------
    def queue(self, queue_id: str) -> tuple[Queue, list[str]]:
        """The kept `Queue` of `queue_id`, or a new one if the store or telemetry knows it."""
        try:  # any queue the CLI can address: also a dummy service's `wf-dummy-...`
            check_label_value(queue_id)
        except InvalidName:
            raise InputProblem(
                "path.queue_id",
                f"invalid queue id {queue_id!r}: 1..63 characters of A-Z a-z 0-9 . _ -, "
                "starting and ending with a letter or digit "
                "(e.g. wf-btcusdt-api_candles_1m-20240801-abc123)",
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
            raise ApiProblem(
                404, f"unknown queue {queue_id}: no queue-state record and no telemetry"
            )
        return self._keep(queue_id, queue, list((record or {}).get("targets") or ()))

    def _states(self, queue: Queue) -> dict[str, ProducerState]:
        """The producers' states, once the queue's history is read (else 503)."""
        states = queue.producers(timeout=HISTORY_WAIT_S)
        if not queue.history_read:
            raise ApiProblem(
                503,
                f"the telemetry history of {queue.queue_id} is still being read; ask again",
                headers={"Retry-After": "5"},
            )
        return states

    def detail(self, queue: Queue, targets: Sequence[str]) -> m.QueueDetail:
        """The queue's status and each producer's."""
        states = self._states(queue)
        return m.QueueDetail(
            queue_id=queue.queue_id,
            status=queue_status(states, targets),
            ended=ended(states, targets),
            producers=[_producer(s) for s in states.values()],
        )

    def stop(self, queue: Queue, targets: Sequence[str], request: m.StopRequest) -> m.StopResponse:
        """Send `stop`; return who acknowledged (409 if the queue has ended already)."""
        states = self._states(queue)
        if request.target is not None:
            states = {p: s for p, s in states.items() if p.partition("__")[0] == request.target}
            targets = [request.target]
        if ended(states, targets):
            status = queue_status(states, targets)
            raise ApiProblem(
                409, f"queue {queue.queue_id} has ended ({status}): nothing to stop",
                queue_status=status,
            )  # fmt: skip
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

    # -- kept queues -------------------------------------------------------------------------
    @property
    def kept(self) -> int:
        """How many `Queue`s (follower threads) the service keeps."""
        return len(self._queues)

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


def _order(summary: m.QueueSummary) -> tuple[float, str]:
    created = summary.created_at.timestamp() if summary.created_at is not None else 0.0
    return created, summary.queue_id


def _encode_cursor(position: tuple[float, str]) -> str:
    return base64.urlsafe_b64encode(f"{position[0]!r}|{position[1]}".encode()).decode()


def _decode_cursor(cursor: str) -> tuple[float, str]:
    """The list position a cursor names (the last queue of the page before)."""
    try:
        created, _, queue_id = base64.urlsafe_b64decode(cursor.encode()).decode().partition("|")
        position = float(created), queue_id
    except (binascii.Error, UnicodeError, ValueError):
        raise InputProblem("query.cursor", "not a cursor this API returned") from None
    if not queue_id or position[0] != position[0]:
        raise InputProblem("query.cursor", "not a cursor this API returned")
    return position


def _producer(state: ProducerState) -> m.ProducerStatus:
    return m.ProducerStatus(
        producer=state.producer,
        status=state.status,
        records_written=state.records_written,
        last_seen=_utc(state.last_seen),
        message=state.message,
        dead_letters=state.dead_letters,
        anomalies=state.anomalies,
    )


def _summary(record: dict[str, Any]) -> m.QueueSummary:
    """A queue-state record without what a client has no use for (parameters, launcher)."""
    written = record.get("records_written")
    kind = record.get("type")
    # A candle queue's type ends in its interval (`platform.names.candle_type`).
    interval = str(kind).partition("_candles_")[2] if kind else ""
    return m.QueueSummary(
        queue_id=record["queue_id"],
        symbol=record.get("symbol"),
        interval=interval or None,
        type=kind if isinstance(kind, str) else None,
        status=str(record.get("status") or "launched"),
        records_written=written if isinstance(written, int) else 0,
        targets=[str(t) for t in record.get("targets") or ()],
        created_at=_utc(record.get("created_at")),
        updated_at=_utc(record.get("updated_at")),
        error_message=_text(record.get("error_message")),
    )
