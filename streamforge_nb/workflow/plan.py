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

import inspect
import json
import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, overload

from pydantic import SecretStr

from streamforge_nb.control.queue import Queue
from streamforge_nb.control.state import new_record
from streamforge_nb.exceptions import InvalidName
from streamforge_nb.platform.contract import StartCommand
from streamforge_nb.platform.intervals import check_interval
from streamforge_nb.platform.names import (
    TimeRange,
    candle_type,
    check_dns1123_label,
    check_parameters,
    check_symbol,
    collection_name,
    data_topic,
    job_name,
    new_short_id,
    producer_id,
    queue_id,
)
from streamforge_nb.settings import Settings, local_home, split_url_credentials
from streamforge_nb.store.candles import CandleStore
from streamforge_nb.workflow.arguments import check_arguments, check_count, check_series_names
from streamforge_nb.workflow.launchers import Launcher, get_launcher
from streamforge_nb.workflow.ranges import check_time_range
from streamforge_nb.workflow.steps import Plan, Step
from streamforge_nb.workflow.targets import (
    OUTPUT_ENV,
    PARAMETERS_ENV,
    TARGETS,
    job_spec,
    runs_volume,
)

if TYPE_CHECKING:
    from streamforge_nb.workflow.batch import Batch

__all__ = ["DEFAULT_IMAGE", "Workflow"]

# The single-user image (jupyter-image/) also runs the Jobs: same library, same notebooks.
DEFAULT_IMAGE = "registry.dmz.home/streamforge/core-modules/jupyter-python311:v0.0.2"
_IMAGE = re.compile(
    r"^[a-z0-9]+([._-][a-z0-9]+)*(:[0-9]+)?(/[a-z0-9]+([._-][a-z0-9]+)*)*"
    r"(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(@sha256:[a-f0-9]{64})?$"
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
        resources: Mapping[str, Mapping[str, Mapping[str, str]]] | None = None,
        timeouts: Mapping[str, int] | None = None,
        cleanup: bool = False,
    ) -> None:
        check_arguments(
            targets=targets, source=source, base_url=base_url, archives=archives, store=store,
            image=image, namespace=namespace, output_dir=output_dir, settings=settings,
            short_id=short_id, max_candles=max_candles, now=now, parameters=parameters,
            resources=resources, timeouts=timeouts, cleanup=cleanup,
        )  # fmt: skip
        self.settings = settings or Settings.from_env()
        # The sink deletes the data topic (and an empty DLQ) once it committed the end.
        self.cleanup = bool(cleanup)
        # Per target: Kubernetes requests/limits merged over the target's defaults, and the
        # run's timeout in seconds (papermill's and the Job's deadline).
        self.resources = {t: dict(r) for t, r in (resources or {}).items()}
        self.timeouts = dict(timeouts or {})
        for what, per_target in (("resources", self.resources), ("timeouts", self.timeouts)):
            strange = sorted(set(per_target) - set(targets))
            if strange:
                raise InvalidName(f"{what} for {strange}, which this workflow does not run")
        for target, seconds in self.timeouts.items():
            if not isinstance(seconds, int) or isinstance(seconds, bool) or seconds < 1:
                raise InvalidName(f"timeout of {target} must be whole seconds >= 1: {seconds!r}")
        # Extra notebook parameters per target, e.g. {"dummy": {"metrics_port": 0}}.
        self.extra_parameters = {
            t: check_parameters(p, f"parameters of {t}") for t, p in (parameters or {}).items()
        }
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
        self.output_dir = output_dir or self.settings.runs or str(local_home() / "runs")
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

    @overload
    @classmethod
    def candles(
        cls, symbol: str, interval: str, time_range: str, *, source: str = ...,
        store: str | None = ..., sinks: int = ..., partitions: int = ..., **options: Any,
    ) -> Workflow: ...  # fmt: skip

    @overload
    @classmethod
    def candles(
        cls, symbol: list[str] | tuple[str, ...], interval: str | list[str] | tuple[str, ...],
        time_range: str, *, source: str = ..., store: str | None = ..., sinks: int = ...,
        partitions: int = ..., **options: Any,
    ) -> Batch: ...  # fmt: skip

    @overload
    @classmethod
    def candles(
        cls, symbol: str, interval: list[str] | tuple[str, ...], time_range: str, *,
        source: str = ..., store: str | None = ..., sinks: int = ..., partitions: int = ...,
        **options: Any,
    ) -> Batch: ...  # fmt: skip

    @classmethod
    def candles(
        cls,
        symbol: str | list[str] | tuple[str, ...],
        interval: str | list[str] | tuple[str, ...],
        time_range: str,
        *,
        source: str = "api",
        store: str | None = None,
        sinks: int = 1,
        partitions: int = 1,
        **options: Any,
    ) -> Workflow | Batch:
        """The platform's candle workflow: loader (exchange -> Kafka), sink (Kafka -> store).

        Lists of symbols or intervals make a `Batch`: one queue per symbol x interval x
        shard of the range (see `workflow.shards` for the rule; options as here, plus
        `shard_candles`). `partitions`: of the data topic. Messages are keyed by the
        candle's `_key`, so every copy of one candle (a replay, a re-load) lands on one
        partition in order and its last copy is the one stored; a series' candles spread
        over the partitions and reach the store out of order, which upserts by `_key` make
        harmless. `sinks`: sink Jobs in the queue's one consumer group, sharing those
        partitions (sinks beyond `partitions` idle); each has its own producer id and Job.
        """
        check_series_names("symbol", symbol)
        check_series_names("interval", interval)
        if not isinstance(symbol, str) or not isinstance(interval, str):
            # A Batch is made of Workflows (workflow.batch imports this module): found by name.
            from streamforge_nb.registry import BATCHES

            batch: Batch = BATCHES.get("candles")(
                symbol, interval, time_range, source=source, store=store, sinks=sinks,
                partitions=partitions, **options,
            )  # fmt: skip
            return batch
        check_count("sinks", sinks)
        check_count("partitions", partitions)
        # Workflow's keywords; the others would fail as a TypeError inside __init__.
        known = set(inspect.signature(cls.__init__).parameters) - {"self", "targets"}
        unknown = sorted(set(options) - known)
        if unknown:
            raise InvalidName(f"unknown workflow option(s): {', '.join(unknown)}")
        check_arguments(parameters=options.get("parameters"))
        parameters = {
            t: check_parameters(p, f"parameters of {t}")
            for t, p in (options.pop("parameters", None) or {}).items()
        }
        if partitions > 1:  # whichever Job comes first creates the topic: both know its shape
            for target in ("loader-candles", "arango-candles"):
                parameters[target] = {"partitions": partitions, **parameters.get(target, {})}
        return cls(
            symbol,
            interval,
            time_range,
            ["loader-candles", *["arango-candles"] * sinks],
            source=source,
            store=store,
            parameters=parameters,
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
        replicated = sorted({t for t in targets if targets.count(t) > 1} - {"arango-candles"})
        if replicated:
            raise InvalidName(
                f"target(s) {replicated} named more than once: only the sink (arango-candles) "
                "runs as several Jobs, sharing the data topic's partitions in one group"
            )
        sinks = targets.count("arango-candles")
        # Several sinks: each its own producer id, Job and notebook (`<short>s<n>`, `-<n>`).
        replicas = [sum(u == t for u in targets[:i]) + 1 if sinks > 1 and t == "arango-candles"
                    else 0 for i, t in enumerate(targets)]  # fmt: skip
        steps = tuple(
            self._step(
                t, symbol, interval, type_, span, qid, topic, collection, short, image, namespace,
                replica=n,
            )
            for t, n in zip(targets, replicas, strict=True)
        )  # fmt: skip
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
        replica: int = 0,
    ) -> Step:
        short = f"{short}s{replica}" if replica else short
        producer = producer_id(target, short)
        name = job_name(target, symbol, short)
        notebook = f"{target}-{replica}" if replica else target
        output = f"{self.output_dir.rstrip('/')}/{qid}/{notebook}.ipynb"
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
            job_name=name,
            namespace=namespace,
            queue_id=qid,
            target=target,
            image=image,
            env=env,
            resources=self.resources.get(target),
            timeout_s=self.timeouts.get(target),
            pull_secret=self.settings.image_pull_secret,
            volume=self._runs_volume(),
        )
        return Step(target, producer, name, TARGETS[target].notebook, output, start, job)

    def _runs_volume(self) -> tuple[dict[str, Any], dict[str, Any]] | None:
        if not self.settings.runs_volume or "://" in self.output_dir:
            return None
        return runs_volume(self.settings.runs_volume, self.output_dir)

    def _parameters(self, target: str, interval: str) -> dict[str, Any]:
        base: dict[str, Any] = {}
        if target == "loader-candles":
            base = {"interval": interval, **self._loader_options()}
        elif target == "arango-candles":
            base = {"store_url": self.store_url, "cleanup": self.cleanup or None}
            base = {k: v for k, v in base.items() if v}
        return {**base, **self.extra_parameters.get(target, {})}

    def _loader_options(self) -> dict[str, Any]:
        options = {"source": self.source, "base_url": self.base_url, "archives": self.archives}
        return {k: v for k, v in options.items() if v}

    def launch(self, launcher: str | Launcher = "local", **launcher_options: Any) -> Queue:
        """Record the queue, send the `start` commands, start one Job per target.

        A queue id is launched once: the record is created first, atomically, so of two
        launches of one queue id (two kernels, two clicks) the second gets `QueueExists`
        naming the first, and sends nothing and starts nothing.
        """
        import time

        from streamforge_nb.kafka.send import send_command

        plan = self._plan
        launched = time.time()  # the Queue reads telemetry from here (its queue-state record's)
        if launcher == "local":
            # Local Jobs get the ConfigMap/Secret values from settings: this workflow's.
            launcher_options.setdefault("settings", self.settings)
        runner = get_launcher(launcher, **launcher_options)
        with CandleStore.open(self.store_url, settings=self.settings) as store:
            store.create_queue_state(
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
        """Launch loads for exactly the `missing` gaps `store` has in this workflow's range.

        Gaps the exchange confirmed empty (`kind` `exchange_empty`) are not asked again.
        """
        plan = self._plan
        gaps = store.gaps(plan.symbol, plan.interval, plan.time_range.start, plan.time_range.end)
        queues = []
        for gap in gaps[gaps["kind"] == "missing"].itertuples():
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
                parameters=self.extra_parameters,
                resources=self.resources,
                timeouts=self.timeouts,
                cleanup=self.cleanup,
            )
            queues.append(piece.launch(**launch_options))
        return queues
