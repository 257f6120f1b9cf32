"""Workers: processes that run a queue's step and talk to the platform through `Worker`.

One entry for every worker. Each worker's options are defined once, below, and read the same
three ways: from a mapping (a payload notebook's papermill parameters), from a command line
(`streamforge-nb loader ...` or `python -m streamforge_nb.workers.loader ...`) and from the
platform's environment variables (`QUEUE_ID`, `SYMBOL`, ...). Precedence, highest first: the
mapping or the command line, the environment, the default. In a mapping, None, "" and an empty
list mean "not given".

This module stays light (click only): the CLI's `--help` imports it, and a worker's own module,
with Kafka and the rest, is imported only when the worker runs. The option types and `Option`
are in `workers.options` (re-exported here).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

import click

from streamforge_nb.exceptions import ConfigError, MissingOption, StreamForgeError
from streamforge_nb.workers.options import (
    COUNT,
    HOST,
    NON_NEGATIVE_SECONDS,
    PORT,
    PORT_OR_ZERO,
    QUEUE_ID,
    SECONDS,
    Option,
)

__all__ = [
    "COUNT",
    "HOST",
    "NON_NEGATIVE_SECONDS",
    "PORT",
    "PORT_OR_ZERO",
    "QUEUE_ID",
    "SECONDS",
    "WORKERS",
    "Option",
    "WorkerEntry",
    "command",
    "from_argv",
    "from_mapping",
    "main",
    "run",
    "run_notebook",
]


@dataclass(frozen=True)
class WorkerEntry:
    """A worker: its options and where its code is (imported only to run it)."""

    name: str
    title: str  # how messages name it: "loader-candles for <queue id> ended normally"
    help: str
    module: str
    options_class: str
    run_function: str
    options: tuple[Option, ...]
    # Fills values derived from others (the loader's interval from TYPE), before checks.
    derive: Callable[[dict[str, Any]], None] | None = None

    def load(self) -> tuple[Any, Callable[..., int]]:
        """Import the worker's module; return its options class and run function."""
        module = importlib.import_module(self.module)
        return getattr(module, self.options_class), getattr(module, self.run_function)


_QUEUE_ID = Option(
    "queue_id", "The queue whose step this worker runs.", QUEUE_ID, envvar="QUEUE_ID",
    required=True, metavar="TEXT",
)  # fmt: skip
_DEBUG = Option(
    "debug", "Debug-level JSON logs; tracebacks in error logs.", is_flag=True, default=False,
    envvar="STREAMFORGE_DEBUG",
)  # fmt: skip
_KAFKA_TOPIC = Option("kafka_topic", "Data topic (default: <queue id>-data).", envvar="KAFKA_TOPIC")
_REPORT_EVERY = Option(
    "report_every", "Seconds between `loading` events.", NON_NEGATIVE_SECONDS, 2.0, metavar="S"
)


def _producer_id(default: str) -> Option:
    return Option(
        "producer_id", f"Telemetry producer id (default: {default}).",
        envvar="TELEMETRY_PRODUCER_ID",
    )  # fmt: skip


def _interval_from_type(values: dict[str, Any]) -> None:
    # The platform's TYPE (e.g. api_candles_5m) names the interval last.
    if not values.get("interval") and values.get("type"):
        values["interval"] = str(values["type"]).rsplit("_", 1)[-1]


DUMMY = WorkerEntry(
    name="dummy",
    title="the dummy service",
    help="Run the platform's test service: pong on ping, interrupted on stop, and on request "
    "simulated loading, a failure or a timed exit. Prometheus metrics at /metrics.",
    module="streamforge_nb.workers.dummy",
    options_class="DummyOptions",
    run_function="run_dummy",
    options=(
        _QUEUE_ID,
        _producer_id("dummy__<random id>"),
        Option("noop", "Send `started` only, then idle (still answers ping and stop).",
               is_flag=True, default=False),
        Option("exit_on_ping", "End after answering one ping.", is_flag=True, default=False),
        Option("exit_after", "End after N seconds.", SECONDS, metavar="N"),
        Option("simulate_loading", "Send `loading` every --loading-interval seconds.",
               is_flag=True, default=False),
        Option("loading_interval", "Seconds between simulated `loading` events.", SECONDS,
               10.0, metavar="S"),
        Option("fail_after", "Send `error` and exit 1 after N seconds.", NON_NEGATIVE_SECONDS,
               metavar="N"),
        Option("metrics_port", "Port of Prometheus /metrics; 0: any free port.", PORT_OR_ZERO,
               8000, envvar="STREAMFORGE_METRICS_PORT", metavar="P"),
        _DEBUG,
    ),
)  # fmt: skip

LOADER = WorkerEntry(
    name="loader",
    title="loader-candles",
    help="Load candles from the exchange (REST klines or public-data archives) into the "
    "queue's data topic.",
    module="streamforge_nb.workers.loader",
    options_class="LoaderOptions",
    run_function="run_loader",
    options=(
        _QUEUE_ID,
        Option("symbol", "Exchange symbol, e.g. BTCUSDT.", envvar="SYMBOL", required=True),
        Option("interval", "Binance interval: 1s 1m 5m 1h 1d ... (default: from --type).",
               envvar="INTERVAL", required=True),
        Option("type", "The platform's type, e.g. api_candles_5m; gives --interval.",
               envvar="TYPE"),
        Option("time_range", "YYYY-MM-DD:YYYY-MM-DD (UTC, end exclusive) or ISO/ISO.",
               envvar="TIME_RANGE", required=True),
        _KAFKA_TOPIC,
        _producer_id("loader-candles__<random id>"),
        Option("source", "Klines from the REST API or the public-data archives.",
               click.Choice(["api", "archive"]), "api"),
        Option("base_url", "Exchange URL (default: Binance's REST API or data.binance.vision)."),
        Option("archives", "Archive zip URL or path (repeat; default: derived from the range).",
               multiple=True, flag="--archive", metavar="URL"),
        _REPORT_EVERY,
        Option("partitions", "Partitions of the data topic when it is created.", COUNT, 1),
        _DEBUG,
    ),
    derive=_interval_from_type,
)  # fmt: skip

SINK = WorkerEntry(
    name="sink",
    title="arango-candles",
    help="Store a data topic's candles in the CandleStore; commit offsets after each stored "
    "batch; bad messages go to <topic>-dlq.",
    module="streamforge_nb.workers.sink",
    options_class="SinkOptions",
    run_function="run_sink",
    options=(
        _QUEUE_ID,
        _KAFKA_TOPIC,
        _producer_id("arango-candles__<the queue's short id>"),
        Option("store_url", "local:///path or an ArangoDB URL (default: ARANGO_URL, else the "
               "embedded store).", envvar="STREAMFORGE_STORE_URL"),
        Option("time_range", "The queue's range, YYYY-MM-DD:YYYY-MM-DD or ISO/ISO: a candle "
               "opening outside it is refused (default: from the day in the queue id on).",
               envvar="TIME_RANGE"),
        Option("group_id", "Consumer group (default: <queue id>-sink)."),
        Option("batch_size", "Most candles stored per batch.", COUNT, 10_000),
        Option("batch_seconds", "Longest wait to fill a batch.", SECONDS, 1.0, metavar="S"),
        _REPORT_EVERY,
        Option("partitions", "Partitions of the data topic when it is created.", COUNT, 1),
        Option("wait_for_loader", "Finish once the loader finished and the topic is read; "
               "without: at the end of the topic.", is_flag=True, default=True,
               flag="--wait-for-loader/--no-wait-for-loader"),
        Option("cleanup", "Delete the data topic (and an empty DLQ) once its end is "
               "committed.", is_flag=True, default=False),
        _DEBUG,
    ),
)  # fmt: skip

WORKERS: dict[str, WorkerEntry] = {w.name: w for w in (DUMMY, LOADER, SINK)}


def _entry(name: str) -> WorkerEntry:
    try:
        return WORKERS[name]
    except KeyError:
        raise ConfigError(f"no worker {name!r}; known: {', '.join(WORKERS)}") from None


def _given(value: Any) -> bool:
    return value is not None and value != "" and value != [] and value != ()


def _build(entry: WorkerEntry, values: dict[str, Any]) -> Any:
    """Check resolved values and return the worker's options object."""
    if entry.derive is not None:
        entry.derive(values)
    for option in entry.options:
        if option.required and not _given(values.get(option.name)):
            via = f"{option.envvar}, or " if option.envvar else ""
            raise MissingOption(
                f"{option.flag_text} ({via}the notebook parameter {option.name}) is required"
            )
    options_class, _run = entry.load()
    names = {f.name for f in fields(options_class)}
    return options_class(**{k: v for k, v in values.items() if k in names and v is not None})


def from_mapping(name: str, values: Mapping[str, Any]) -> Any:
    """Build a worker's options from a mapping (e.g. `globals()` of a payload notebook).

    Other keys are ignored. An option the mapping does not give (None, "" or empty) comes
    from its environment variable, else its default; values are converted by the option's
    type, as on the command line.
    """
    entry = _entry(name)
    cmd = command(name)
    ctx = click.Context(cmd, info_name=name)
    resolved: dict[str, Any] = {}
    for param in cmd.params:
        assert param.name is not None
        raw = values.get(param.name)
        if not _given(raw):
            raw = param.value_from_envvar(ctx)
        if not _given(raw):
            raw = param.get_default(ctx)
        try:
            resolved[param.name] = param.type_cast_value(ctx, raw)
        except click.BadParameter as exc:
            raise ConfigError(f"{param.name}: {exc.message}") from None
    return _build(entry, resolved)


def from_argv(name: str, argv: Sequence[str]) -> Any:
    """Build a worker's options from command-line arguments (and the environment)."""
    cmd = command(name)
    with cmd.make_context(name, list(argv)) as ctx:
        try:
            return _build(_entry(name), dict(ctx.params))
        except MissingOption as exc:
            raise click.UsageError(str(exc), ctx) from None


def run(name: str, options: Any) -> int:
    """Run a worker as a process does: JSON logs, our errors as one log line; exit code."""
    import logging

    from streamforge_nb.logs import configure_json_logging

    entry = _entry(name)
    debug = bool(getattr(options, "debug", False))
    configure_json_logging(debug)
    _options_class, run_function = entry.load()
    try:
        return run_function(options)
    except StreamForgeError as exc:
        from streamforge_nb.program import exit_code

        logging.getLogger(f"streamforge_nb.{name}").error(
            "%s could not run: %s", name, exc, exc_info=debug
        )
        return exit_code(exc)  # the CLI's table: bad input 2, a broker not running 3, ...


def run_notebook(name: str, parameters: Mapping[str, Any]) -> None:
    """A payload notebook's body: run the worker; raise when it ends with a non-zero code."""
    from streamforge_nb.logs import configure_json_logging

    entry = _entry(name)
    options = from_mapping(name, parameters)
    configure_json_logging(options.debug)
    _options_class, run_function = entry.load()
    exit_code = run_function(options)
    if exit_code != 0:
        raise RuntimeError(
            f"{entry.title} for {options.queue_id} ended with exit code {exit_code} "
            "(its error event is on queue-events)"
        )
    print(f"{entry.title} for {options.queue_id} ended normally")


def command(name: str) -> click.Command:
    """Return the click command of a worker (`streamforge-nb <name>` and `python -m`)."""
    entry = _entry(name)

    def callback(**values: Any) -> int:
        ctx = click.get_current_context()
        # `streamforge-nb --debug loader ...` turns on the worker's debug logs too.
        values["debug"] = bool(values.get("debug")) or bool(
            getattr(ctx.find_root().obj, "debug", False)
        )
        try:
            options = _build(entry, values)
        except MissingOption as exc:
            raise click.UsageError(str(exc), ctx) from None
        return run(name, options)

    return click.Command(
        name,
        callback=callback,
        params=[option.click_option() for option in entry.options],
        help=entry.help,
    )


def main(name: str, argv: Sequence[str] | None = None) -> int:
    """`python -m streamforge_nb.workers.<name> ...`: run the worker's command; exit code."""
    from streamforge_nb.program import run_command

    return run_command(command(name), argv, prog_name=f"python -m {_entry(name).module}")
