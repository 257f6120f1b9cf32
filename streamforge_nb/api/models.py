"""The queue-manager API's request and response bodies.

Small pydantic models over what `Workflow` and `Queue` take and return; the pong itself is
the contract's `Pong`. `api.openapi` renders them into the OpenAPI document's components,
the same way `platform.schemas` renders the messages' JSON Schemas.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field

from streamforge_nb.platform.contract import Pong

if TYPE_CHECKING:
    from streamforge_nb.workflow.steps import Plan

__all__ = [
    "CancelRequest",
    "CancelResponse",
    "FieldProblem",
    "Health",
    "PingRequest",
    "PingResponse",
    "PongItem",
    "Problem",
    "ProducerCancel",
    "ProducerStatus",
    "QueueDetail",
    "QueueList",
    "QueueSummary",
    "StartRequest",
    "StartResponse",
    "StopRequest",
    "StopResponse",
]

# Every wait the API runs for a client ends within this (the client's own timeout aside).
MAX_WAIT_S = 300.0


class _Request(BaseModel):
    # A misspelt field is an error, not a silently ignored option.
    model_config = ConfigDict(extra="forbid", strict=True)


class StartRequest(_Request):
    """Start the candle workflow (loader -> sink) over one symbol, interval and range."""

    symbol: str = Field(description="Exchange symbol, e.g. BTCUSDT.")
    interval: str = Field(description="Binance interval: 1s 1m 5m 1h 1d ...")
    time_range: str = Field(
        description="YYYY-MM-DD:YYYY-MM-DD (UTC, end exclusive) or YYYY-MM-DD:now."
    )
    launcher: Literal["local", "kubernetes"] = Field(
        "local", description="Run the Jobs as processes next to the API, or in Kubernetes."
    )
    namespace: str = Field("stf", description="Kubernetes namespace of the Jobs.")
    source: Literal["api", "archive"] = "api"
    base_url: str | None = Field(None, description="Exchange URL (default: Binance's).")
    archives: list[str] = Field(default_factory=list, description="Archive zip URLs or paths.")
    image: str | None = Field(None, description="Job image (default: the single-user image).")
    sinks: int = Field(1, ge=1, description="Sink Jobs sharing the data topic's partitions.")
    partitions: int = Field(1, ge=1, description="Partitions of the data topic.")


class StartResponse(BaseModel):
    """What was started: the platform's names of the new queue."""

    queue_id: str
    data_topic: str
    collection: str | None
    targets: list[str] = Field(description="One per step (several sinks: repeated).")
    producers: list[str] = Field(description="Producer ids, one per step.")
    jobs: list[str] = Field(description="Job names, one per step.")
    launcher: str

    @classmethod
    def from_plan(cls, plan: Plan, launcher: str) -> StartResponse:
        """Answer a start of `plan` by `launcher` (the API and the CLI's --json alike)."""
        return cls(
            queue_id=plan.queue_id,
            data_topic=plan.data_topic,
            collection=plan.collection,
            targets=[s.target for s in plan.steps],
            producers=[s.producer_id for s in plan.steps],
            jobs=[s.job_name for s in plan.steps],
            launcher=launcher,
        )


class QueueSummary(BaseModel):
    """One launched queue as its queue-state record has it, refreshed from telemetry."""

    queue_id: str
    symbol: str | None = None
    interval: str | None = None
    type: str | None = None
    status: str
    records_written: int = 0
    targets: list[str] = Field(default_factory=list)
    created_at: datetime | None = Field(None, description="ISO 8601, UTC.")
    updated_at: datetime | None = Field(None, description="ISO 8601, UTC.")
    error_message: str | None = None


class QueueList(BaseModel):
    """One page of launched queues, oldest first."""

    queues: list[QueueSummary]
    next_cursor: str | None = Field(
        None, description="Pass as `cursor` for the next page (null: this is the last)."
    )


class ProducerStatus(BaseModel):
    """What the telemetry (and the launcher's Jobs) say of one producer."""

    producer: str
    status: str
    records_written: int
    last_seen: datetime | None = Field(description="Its last event (ISO 8601, UTC).")
    message: str | None = None
    dead_letters: int = Field(0, description="Messages it refused to the DLQ (a sink's).")
    anomalies: int = Field(
        0, description="Candles it stored with an anomaly the exchange served (a sink's)."
    )


class QueueDetail(BaseModel):
    """One queue: its status folded from its producers', and each producer's."""

    queue_id: str
    status: str = Field(
        description="launched, running, error, failed, interrupted, "
        "finished_with_dead_letters (a sink refused messages to its DLQ), finished."
    )
    ended: bool = Field(description="Every producer ended and every target reported.")
    producers: list[ProducerStatus]


class StopRequest(_Request):
    """Ask the queue's workers to stop (the `stop` command)."""

    target: str | None = Field(None, description="Only workers of this kind.")
    timeout: float = Field(30.0, gt=0, le=MAX_WAIT_S, description="Seconds to wait for acks.")


class StopResponse(BaseModel):
    """The producers that acknowledged `stop` with `interrupted`."""

    queue_id: str
    acknowledged: list[str]


class CancelRequest(_Request):
    """Stop for sure: `stop`, then delete the queue's Jobs after `grace` seconds."""

    target: str | None = Field(None, description="Only workers of this kind.")
    grace: float = Field(30.0, ge=0, le=MAX_WAIT_S)
    kill_grace: float = Field(10.0, ge=0, le=MAX_WAIT_S)


class ProducerCancel(BaseModel):
    """How one producer ended under `cancel`."""

    producer: str
    status: str
    cancel: str | None = Field(None, description="stopped, deleted, ... (None: untouched).")
    message: str | None = None


class CancelResponse(BaseModel):
    """Every producer after `cancel`."""

    queue_id: str
    producers: list[ProducerCancel]


class PingRequest(_Request):
    """Send a `ping`; wait for pongs."""

    target: str | None = Field(None, description="Only workers of this kind answer.")
    timeout: float = Field(5.0, gt=0, le=60.0, description="Seconds to wait for the pongs.")
    expect: int = Field(1, ge=1, description="Return once this many pongs came.")


class PongItem(BaseModel):
    """One pong matched to the ping, with the round trip the API measured."""

    producer: str
    round_trip_ms: float
    pong: Pong


class PingResponse(BaseModel):
    """The pongs that answered within the timeout (none: the API answers 504)."""

    queue_id: str
    pongs: list[PongItem]


class FieldProblem(BaseModel):
    """One bad input: where (`body.interval`, `query.limit`) and why."""

    field: str
    message: str


class Problem(BaseModel):
    """Every error, as RFC 9457 `application/problem+json` (never a secret, never the input)."""

    model_config = ConfigDict(extra="allow")  # extension members, e.g. a stopped queue's status

    type: str = Field("about:blank", description="about:blank: the status says it all.")
    title: str = Field(description="The status' phrase, e.g. Not Found.")
    status: int
    detail: str = Field(description="What went wrong, in one sentence.")
    instance: str | None = Field(None, description="The request's path.")
    errors: list[FieldProblem] | None = Field(None, description="Each bad input (422).")


class Health(BaseModel):
    """The server is up (`GET /healthz`, no token)."""

    status: Literal["ok"] = "ok"
    version: str
