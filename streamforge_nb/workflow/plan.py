"""`Workflow`: one object that plans, launches and backfills a queue of notebook Jobs.

    wf = Workflow.candles("BTCUSDT", "1m", "2024-08-01:2024-08-02")
    wf.plan()                  # every name, start command and Job spec; no side effects
    queue = wf.launch()        # "local" (processes here) or "kubernetes"
    queue.wait()

Everything is validated when the Workflow is made, before any side effect. `launch` then
records the queue's state, sends one `start` command per target on `queue-control`, and starts
one Job per target whose payload is the target's notebook run by papermill.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import SecretStr

from streamforge_nb.control.queue import Queue
from streamforge_nb.control.state import new_record
from streamforge_nb.exceptions import InvalidName
from streamforge_nb.platform.contract import StartCommand
from streamforge_nb.platform.intervals import WEEK_OFFSET_MS, check_interval, interval_ms
from streamforge_nb.platform.names import (
    TimeRange,
    candle_type,
    check_dns1123_label,
    check_symbol,
    collection_name,
    data_topic,
    job_name,
    new_short_id,
    parse_time_range,
    producer_id,
    queue_id,
)
from streamforge_nb.settings import Settings, local_home, split_url_credentials
from streamforge_nb.store.candles import CandleStore
from streamforge_nb.workflow.launchers import Launcher, get_launcher
from streamforge_nb.workflow.targets import OUTPUT_ENV, PARAMETERS_ENV, TARGETS, job_spec

__all__ = ["DEFAULT_IMAGE", "EXCHANGE_START", "Plan", "Step", "Workflow", "check_time_range"]

# The single-user image (jupyter-image/) also runs the Jobs: same library, same notebooks.
DEFAULT_IMAGE = "registry.dmz.home/streamforge/core-modules/jupyter-python311:v0.0.2"
_IMAGE = re.compile(
    r"^[a-z0-9]+([._-][a-z0-9]+)*(:[0-9]+)?(/[a-z0-9]+([._-][a-z0-9]+)*)*"
    r"(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(@sha256:[a-f0-9]{64})?$"
)

# Binance's first klines (BTCUSDT, ETHBTC, ...) open on 2017-07-14. When a symbol itself was
# listed is unknown offline, so no range may start before the exchange's era.
EXCHANGE_START = datetime(2017, 7, 14, tzinfo=UTC)
_UNTIL_NOW = re.compile(r"(?P<start>.+?)[:/]now", re.IGNORECASE)


def _last_closed_end(interval: str, now: datetime) -> datetime:
    """The end (exclusive) of the last closed `interval` candle at `now`: the open one's start."""
    step = interval_ms(interval)
    if step is None:  # 1M: months open on the 1st
        return datetime(now.year, now.month, 1, tzinfo=UTC)
    now_ms = int(now.timestamp() * 1000)
    offset = WEEK_OFFSET_MS if interval == "1w" else 0
    return datetime.fromtimestamp((now_ms - (now_ms - offset) % step) / 1000, UTC)


def check_time_range(
    text: str, interval: str, *, max_candles: int, now: datetime | None = None
) -> TimeRange:
    """Parse a workflow's range and refuse what no queue should load, naming the rule.

    `<start>:now` ends at the last closed candle. A range must end by then, start on or
    after `EXCHANGE_START` and hold at most `max_candles` candles of `interval`.
    """
    check_interval(interval)
    now = now or datetime.now(UTC)
    closed = _last_closed_end(interval, now)
    until_now = _UNTIL_NOW.fullmatch(text.strip()) if isinstance(text, str) else None
    if until_now:
        start = until_now["start"].strip()
        span = parse_time_range(f"{start}/{closed.isoformat()}")
    else:
        span = parse_time_range(text)
    if span.start >= closed:
        raise InvalidName(
            f"time range {text!r} starts {span.start:%Y-%m-%d %H:%M:%S} UTC, after the last "
            f"closed {interval} candle (it ends {closed:%Y-%m-%d %H:%M:%S} UTC): nothing to load"
        )
    if span.end > closed:
        raise InvalidName(
            f"time range {text!r} ends {span.end:%Y-%m-%d %H:%M:%S} UTC, after the last closed "
            f"{interval} candle (it ends {closed:%Y-%m-%d %H:%M:%S} UTC): a range must end by "
            f"then; '{span.start:%Y-%m-%d}:now' loads until it"
        )
    if span.start < EXCHANGE_START:
        raise InvalidName(
            f"time range {text!r} starts {span.start:%Y-%m-%d}, before the exchange's first "
            f"candles ({EXCHANGE_START:%Y-%m-%d}): start on or after it"
        )
    step = interval_ms(interval) or 28 * 86_400_000  # 1M: at most one a 28 days
    count = -(-(span.end_ms - span.start_ms) // step)
    if count > max_candles:
        pieces = -(-count // max_candles)
        raise InvalidName(
            f"time range {text!r} is {count:,} {interval} candles, more than the "
            f"{max_candles:,} one queue may load (STREAMFORGE_MAX_CANDLES_PER_QUEUE): "
            f"split it into {pieces} or more ranges, one queue each"
        )
    return span


@dataclass(frozen=True)
class Step:
    """One target of the workflow: its names, `start` command and Job."""

    target: str
    producer_id: str
    job_name: str
    notebook: str
    output: str
    start: StartCommand
    job: dict[str, Any]


@dataclass(frozen=True)
class Plan:
    """Everything a launch will do, computed without touching anything."""

    queue_id: str
    symbol: str
    interval: str
    type: str
    time_range: TimeRange
    data_topic: str
    collection: str | None
    namespace: str
    steps: tuple[Step, ...]
    parameters: dict[str, Any] = field(default_factory=dict)

    def names(self) -> dict[str, Any]:
        """Return every platform name of the plan."""
        return {
            "queue_id": self.queue_id, "data_topic": self.data_topic,
            "collection": self.collection,
            "producer_ids": {s.target: s.producer_id for s in self.steps},
            "job_names": {s.target: s.job_name for s in self.steps},
        }  # fmt: skip

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><td>{html.escape(s.target)}</td><td><code>{html.escape(s.producer_id)}</code>"
            f"</td><td><code>{html.escape(s.job_name)}</code></td>"
            f"<td>{html.escape(s.notebook)}</td><td>{html.escape(s.output)}</td></tr>"
            for s in self.steps
        )
        return (
            f"<b>Workflow</b> <code>{html.escape(self.queue_id)}</code><br>"
            f"{html.escape(self.symbol)} {html.escape(self.interval)} {self.time_range} &rarr; "
            f"topic <code>{html.escape(self.data_topic)}</code>, collection "
            f"<code>{html.escape(self.collection or '-')}</code>, namespace "
            f"<code>{html.escape(self.namespace)}</code>"
            "<table><tr><th>target</th><th>producer</th><th>Job</th><th>notebook</th>"
            f"<th>output</th></tr>{rows}</table>"
        )


class Workflow:
    """A queue of targets (loader, sink, ...) over one symbol, interval and time range."""

    def __init__(
        self,
        symbol: str,
        interval: str,
        time_range: str,
        targets: Sequence[str],
        *,
        source: str = "api",
        base_url: str | None = None,
        archives: Sequence[str] = (),
        store: str | None = None,
        image: str = DEFAULT_IMAGE,
        namespace: str = "stf",
        output_dir: str | None = None,
        settings: Settings | None = None,
        short_id: str | None = None,
        parameters: Mapping[str, Mapping[str, Any]] | None = None,
        max_candles: int | None = None,
        now: datetime | None = None,
    ) -> None:
        self.settings = settings or Settings.from_env()
        # Extra notebook parameters per target, e.g. {"dummy": {"metrics_port": 0}}.
        self.extra_parameters = {t: dict(p) for t, p in (parameters or {}).items()}
        if store:
            # Credentials in a store URL stay in this workflow's settings (the local
            # launcher's Secret), never in the plan, the queue state or a command.
            store, user, password = split_url_credentials(str(store))
            if user is not None or password is not None:
                self.settings = self.settings.model_copy(
                    update={"arango_user": user or self.settings.arango_user}
                    | ({"arango_password": SecretStr(password)} if password is not None else {})
                )
        self.store_url = store or self.settings.arango_url
        self.output_dir = output_dir or str(local_home() / "runs")
        self.source, self.base_url, self.archives = source, base_url, list(archives)
        self._plan = self._make_plan(
            check_symbol(symbol),
            check_interval(interval),
            check_time_range(
                time_range,
                interval,
                max_candles=max_candles or self.settings.max_candles_per_queue,
                now=now,
            ),
            list(targets),
            image,
            namespace,
            short_id or new_short_id(),
        )

    @classmethod
    def candles(
        cls,
        symbol: str,
        interval: str,
        time_range: str,
        *,
        source: str = "api",
        store: str | None = None,
        **options: Any,
    ) -> Workflow:
        """The platform's candle workflow: loader (exchange -> Kafka), sink (Kafka -> store)."""
        return cls(
            symbol,
            interval,
            time_range,
            ["loader-candles", "arango-candles"],
            source=source,
            store=store,
            **options,
        )

    def plan(self) -> Plan:
        """Return every name, `start` command and Job spec; no side effects."""
        return self._plan

    def _repr_html_(self) -> str:
        return self._plan._repr_html_()

    def _make_plan(
        self,
        symbol: str,
        interval: str,
        span: TimeRange,
        targets: list[str],
        image: str,
        namespace: str,
        short: str,
    ) -> Plan:
        unknown = [t for t in targets if t not in TARGETS]
        if not targets or unknown:
            raise InvalidName(
                f"unknown target(s) {unknown or targets}; known: " + ", ".join(sorted(TARGETS))
            )
        if not _IMAGE.fullmatch(image):
            raise InvalidName(f"image {image!r} is not a valid image reference")
        check_dns1123_label(namespace)
        if self.source not in ("api", "archive"):
            raise InvalidName(f"source must be 'api' or 'archive', not {self.source!r}")
        type_ = candle_type(interval)
        qid = queue_id(symbol, type_, span.day, short)
        topic = data_topic(qid)
        collection = (
            collection_name(symbol, type_, span.day) if "arango-candles" in targets else None
        )
        steps = tuple(
            self._step(
                t, symbol, interval, type_, span, qid, topic, collection, short, image, namespace
            )
            for t in targets
        )
        return Plan(
            qid,
            symbol,
            interval,
            type_,
            span,
            topic,
            collection,
            namespace,
            steps,
            {**self._loader_options(), "store": self.store_url},
        )

    def _step(
        self,
        target: str,
        symbol: str,
        interval: str,
        type_: str,
        span: TimeRange,
        qid: str,
        topic: str,
        collection: str | None,
        short: str,
        image: str,
        namespace: str,
    ) -> Step:
        producer = producer_id(target, short)
        name = job_name(target, symbol, short)
        output = f"{self.output_dir.rstrip('/')}/{qid}/{target}.ipynb"
        parameters = self._parameters(target, interval)
        env = {
            "QUEUE_ID": qid, "SYMBOL": symbol, "TYPE": type_, "TIME_RANGE": str(span),
            "KAFKA_TOPIC": topic, "COLLECTION_NAME": collection or "",
            "TELEMETRY_PRODUCER_ID": producer,
            PARAMETERS_ENV: json.dumps(parameters, sort_keys=True), OUTPUT_ENV: output,
        }  # fmt: skip
        start = StartCommand(
            queue_id=qid,
            target=target,
            symbol=symbol,
            type=type_,
            time_range=str(span),
            kafka_topic=topic,
            collection_name=collection,
            telemetry_id=producer,
            image=image,
            parameters=parameters,
        )
        job = job_spec(
            job_name=name, namespace=namespace, queue_id=qid, target=target, image=image, env=env
        )
        return Step(target, producer, name, TARGETS[target].notebook, output, start, job)

    def _parameters(self, target: str, interval: str) -> dict[str, Any]:
        base: dict[str, Any] = {}
        if target == "loader-candles":
            base = {"interval": interval, **self._loader_options()}
        elif target == "arango-candles" and self.store_url:
            base = {"store_url": self.store_url}
        return {**base, **self.extra_parameters.get(target, {})}

    def _loader_options(self) -> dict[str, Any]:
        options = {"source": self.source, "base_url": self.base_url, "archives": self.archives}
        return {k: v for k, v in options.items() if v}

    def launch(self, launcher: str | Launcher = "local", **launcher_options: Any) -> Queue:
        """Record the queue, send the `start` commands, start one Job per target."""
        import time

        from streamforge_nb.kafka.send import send_command

        plan = self._plan
        launched = time.time()  # the Queue reads telemetry from here (its queue-state record's)
        if launcher == "local":
            # Local Jobs get the ConfigMap/Secret values from settings: this workflow's.
            launcher_options.setdefault("settings", self.settings)
        runner = get_launcher(launcher, **launcher_options)
        with CandleStore.open(self.store_url, settings=self.settings) as store:
            store.save_queue_state(
                new_record(
                    queue_id=plan.queue_id,
                    symbol=plan.symbol,
                    type_=plan.type,
                    targets=[s.target for s in plan.steps],
                    parameters=plan.parameters,
                    data_topic=plan.data_topic,
                    outputs={s.target: s.output for s in plan.steps},
                    launcher=runner.name,
                    launcher_options=runner.options(),
                    jobs=[s.job_name for s in plan.steps],
                )
            )
        for step in plan.steps:
            send_command(self.settings, step.start)
        for step in plan.steps:
            runner.submit(step.job)
        return Queue(plan.queue_id, self.settings, launcher=runner, since=launched)

    def backfill(self, store: CandleStore, **launch_options: Any) -> list[Queue]:
        """Launch loads for exactly the gaps `store` has in this workflow's range."""
        plan = self._plan
        gaps = store.gaps(plan.symbol, plan.interval, plan.time_range.start, plan.time_range.end)
        queues = []
        for gap in gaps.itertuples():
            span = f"{gap.start.isoformat()}/{gap.end.isoformat()}"
            piece = Workflow(
                plan.symbol,
                plan.interval,
                span,
                [s.target for s in plan.steps],
                source=self.source,
                base_url=self.base_url,
                archives=self.archives,
                store=self.store_url,
                image=plan.steps[0].job["spec"]["template"]["spec"]["containers"][0]["image"],
                namespace=plan.namespace,
                output_dir=self.output_dir,
                settings=self.settings,
            )
            queues.append(piece.launch(**launch_options))
        return queues
