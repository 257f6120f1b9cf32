"""Make, parse and check the platform's names.

Every name the platform uses is built here from its parts and checked against the rules of the
system that stores it: Kafka for topics, Kubernetes for Job names and label values, ArangoDB
for collections. A name that breaks a rule raises `InvalidName` naming the value and the rule,
so a bad symbol fails in the notebook instead of deep inside a worker.

The platform's names:

    queue id     wf-btcusdt-api_candles_1m-20240801-abc123
    data topic   <queue_id>-data
    collection   btcusdt_api_candles_1m_2024_08_01
    producer id  arango-candles__abc123
    Job name     job-arango-candles-btcusdt-abc123

Makers accept a symbol in any case (they lower- or upper-case it as the name needs);
`check_symbol` itself wants the Binance spelling (upper case).
"""

from __future__ import annotations

import keyword
import math
import re
import secrets
from collections.abc import Mapping
from datetime import date, datetime
from typing import Any, NamedTuple

from streamforge_nb.exceptions import InvalidName
from streamforge_nb.platform.intervals import INTERVALS, check_interval

# Re-exported: time ranges were parsed here before they had a module of their own.
from streamforge_nb.platform.time_range import TimeRange as TimeRange
from streamforge_nb.platform.time_range import parse_time_range as parse_time_range

__all__ = [
    "DIGIT_SYMBOL_PREFIX",
    "QueueIdParts",
    "candle_type",
    "check_collection_name",
    "check_dns1123_label",
    "check_kafka_topic",
    "check_label_value",
    "check_parameter_name",
    "check_parameters",
    "check_queue_handle_id",
    "check_queue_id",
    "check_short_id",
    "check_symbol",
    "check_target",
    "check_type",
    "collection_name",
    "data_topic",
    "dlq_topic",
    "job_name",
    "new_short_id",
    "parse_collection_name",
    "parse_queue_id",
    "producer_id",
    "queue_id",
]


_SYMBOL_RE = re.compile(r"[A-Z0-9]{2,20}")
# A type is lowercase snake case; only a trailing interval segment may be `1M` (months).
_TYPE_RE = re.compile(r"[a-z][a-z0-9]*(?:_[a-z0-9]+)*(?:_1M)?")
_CANDLES_TYPE_RE = re.compile(r"[a-z][a-z0-9]*_candles_(?P<interval>[0-9A-Za-z]+)")
_SHORT_RE = re.compile(r"[a-z0-9]{1,12}")
_KAFKA_TOPIC_RE = re.compile(r"[a-zA-Z0-9._-]{1,249}")
_DNS1123_LABEL_RE = re.compile(r"[a-z0-9](?:[-a-z0-9]*[a-z0-9])?")
_LABEL_VALUE_RE = re.compile(r"(?:(?:[A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")
_COLLECTION_RE = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")
_COLLECTION_NAME_RE = re.compile(
    r"(?:sym-)?(?P<symbol>[a-z0-9]+)_(?P<type>[a-z0-9_]+?(?:_1M)?)_(?P<day>\d{4}_\d{2}_\d{2})"
)
_QUEUE_ID_RE = re.compile(
    r"wf-(?P<symbol>[a-z0-9]+)-(?P<type>[a-z0-9_]+?(?:_1M)?)-(?P<day>\d{8})-(?P<short>[a-z0-9]+)"
)


def _require_str(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise InvalidName(f"{what} must be a string, got {type(value).__name__} {value!r}")
    return value


# --- system rules -----------------------------------------------------------------------------


def check_kafka_topic(name: str) -> str:
    """Return `name` if Kafka accepts it as a topic name, else raise `InvalidName`."""
    _require_str(name, "Kafka topic name")
    if name in (".", ".."):
        raise InvalidName(f"invalid Kafka topic name {name!r}: '.' and '..' are reserved")
    if not _KAFKA_TOPIC_RE.fullmatch(name):
        raise InvalidName(
            f"invalid Kafka topic name {name!r} ({len(name)} chars): "
            "Kafka allows 1..249 characters of a-z A-Z 0-9 . _ -"
        )
    return name


def check_dns1123_label(name: str) -> str:
    """Return `name` if it is a Kubernetes DNS-1123 label (Job names), else raise."""
    _require_str(name, "DNS-1123 label")
    if len(name) > 63 or not _DNS1123_LABEL_RE.fullmatch(name):
        raise InvalidName(
            f"invalid Kubernetes name {name!r} ({len(name)} chars): a DNS-1123 label is at most "
            "63 characters of lowercase a-z 0-9 and '-', starting and ending with a letter or digit"
        )
    return name


def check_label_value(value: str) -> str:
    """Return `value` if Kubernetes accepts it as a label value, else raise."""
    _require_str(value, "Kubernetes label value")
    if len(value) > 63 or not _LABEL_VALUE_RE.fullmatch(value):
        raise InvalidName(
            f"invalid Kubernetes label value {value!r} ({len(value)} chars): at most 63 "
            "characters of A-Z a-z 0-9 - _ ., starting and ending with a letter or digit"
        )
    return value


def check_collection_name(name: str) -> str:
    """Return `name` if ArangoDB's traditional naming accepts it as a collection, else raise."""
    _require_str(name, "ArangoDB collection name")
    size = len(name.encode())
    # ArangoDB reserves names starting with '_' for system collections.
    if size > 256 or not _COLLECTION_RE.fullmatch(name):
        raise InvalidName(
            f"invalid ArangoDB collection name {name!r} ({size} bytes): it must start with a "
            "letter, then letters, digits, '_' or '-', at most 256 bytes"
        )
    return name


# --- notebook parameters ---------------------------------------------------------------------

# Names IPython keeps in a kernel's namespace: a parameter of that name would break the
# notebook (`In`, `Out`, `get_ipython`) or the kernel's exit commands.
_KERNEL_NAMES = frozenset({"In", "Out", "get_ipython", "exit", "quit"})
_JSON_SCALARS = (str, int, float, bool, type(None))
_JSON_TYPES = "str, int, float, bool, None, list, dict"
_MAX_DEPTH = 100


def check_parameter_name(name: str) -> str:
    """Return `name` if papermill may assign it in a notebook's parameters cell, else raise.

    Papermill writes `<name> = <value>` into the injected cell verbatim: only a plain ASCII
    Python identifier cannot carry code. Also refused: keywords (a syntax error), names
    starting with `_` (IPython's `_`, `__`, `_i`, `_1`... and dunders like `__builtins__`)
    and IPython's own names. Soft keywords (`match`, `type`) are valid assignment targets:
    the loader's notebook has a `type` parameter.
    """
    _require_str(name, "notebook parameter name")
    # ASCII only: Python NFKC-normalises identifiers, so a fullwidth 'q' would assign 'q'.
    if not (name.isascii() and name.isidentifier()) or keyword.iskeyword(name):
        raise InvalidName(
            f"invalid notebook parameter name {name!r}: a parameter is a Python variable name "
            "(ASCII letters, digits and '_', not starting with a digit, not a keyword)"
        )
    if name.startswith("_") or name in _KERNEL_NAMES:
        raise InvalidName(
            f"invalid notebook parameter name {name!r}: names starting with '_' and "
            f"{', '.join(sorted(_KERNEL_NAMES))} belong to the notebook's kernel"
        )
    return name


def check_parameters(parameters: Any, what: str = "notebook parameters") -> dict[str, Any]:
    """Return `parameters` as a dict if each name passes `check_parameter_name` and each
    value is JSON (str, int, float, bool, None, and lists and str-keyed dicts of those).

    Papermill's translator escapes only those types: anything else it writes as
    `"<str(value)>"` unescaped (a tuple holding a quote runs code), and an int or float
    subclass writes its own `__str__`. Hence exact types, and finite floats (JSON has no NaN).
    """
    if not isinstance(parameters, Mapping):
        raise InvalidName(
            f"{what} must be a mapping of name to value, got {type(parameters).__name__}"
        )
    for name, value in parameters.items():
        if not isinstance(name, str):
            raise InvalidName(f"{what}: parameter names must be strings, got {name!r}")
        try:
            check_parameter_name(name)
        except InvalidName as exc:
            raise InvalidName(f"{what}: {exc}") from None
        problem = _not_json(value)
        if problem:
            raise InvalidName(f"{what}: parameter {name}: {problem}")
    return dict(parameters)


def _not_json(value: Any) -> str:
    """Say what in `value` is not a JSON value ("" if nothing)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        kind = type(item)
        if kind is float and not math.isfinite(item):
            return f"{item!r} is not a JSON number"
        if kind in _JSON_SCALARS:
            continue
        # Papermill and json translate recursively: a deeper value (or one that holds
        # itself) would end in a RecursionError instead of a run.
        if depth > _MAX_DEPTH and kind in (list, dict):
            return f"lists and dicts nest deeper than {_MAX_DEPTH} levels"
        if kind is list:
            stack.extend((v, depth + 1) for v in item)
        elif kind is dict:
            keys = [k for k in item if type(k) is not str]
            if keys:
                return f"dict key {keys[0]!r} is not a string"
            stack.extend((v, depth + 1) for v in item.values())
        else:
            return f"a {kind.__name__} is not a JSON value ({_JSON_TYPES})"
    return ""


# --- platform parts ---------------------------------------------------------------------------


def check_symbol(symbol: str) -> str:
    """Return `symbol` if it is a Binance-style symbol (e.g. `BTCUSDT`), else raise."""
    _require_str(symbol, "symbol")
    if not _SYMBOL_RE.fullmatch(symbol):
        hint = (
            f" (did you mean {symbol.upper()!r}?)" if _SYMBOL_RE.fullmatch(symbol.upper()) else ""
        )
        raise InvalidName(
            f"invalid symbol {symbol!r}: a symbol is 2..20 uppercase letters or digits{hint}"
        )
    return symbol


def check_type(type_: str) -> str:
    """Return `type_` if it is a data type like `api_candles_1m`, else raise."""
    _require_str(type_, "type")
    if not _TYPE_RE.fullmatch(type_):
        raise InvalidName(
            f"invalid type {type_!r}: a type is lowercase snake case like 'api_candles_1m' "
            "(only a trailing '_1M' month interval may be uppercase)"
        )
    m = _CANDLES_TYPE_RE.fullmatch(type_)
    if m and m["interval"] not in INTERVALS:
        raise InvalidName(
            f"invalid type {type_!r}: {m['interval']!r} is not a Binance interval "
            f"(expected one of {', '.join(INTERVALS)})"
        )
    return type_


def check_target(target: str) -> str:
    """Return `target` if it is a worker kind like `arango-candles` (a DNS-1123 label)."""
    _require_str(target, "target")
    try:
        return check_dns1123_label(target)
    except InvalidName as exc:
        raise InvalidName(f"invalid target (worker kind) {target!r}: {exc}") from None


def check_short_id(short: str) -> str:
    """Return `short` if it is a short id (1..12 lowercase letters or digits), else raise."""
    _require_str(short, "short id")
    if not _SHORT_RE.fullmatch(short):
        raise InvalidName(f"invalid short id {short!r}: expected 1..12 lowercase letters or digits")
    return short


def candle_type(interval: str, source: str = "api") -> str:
    """Return the type of candles at `interval` from `source`, e.g. `api_candles_1m`."""
    return check_type(f"{source}_candles_{check_interval(interval)}")


def new_short_id() -> str:
    """Return a fresh random short id: 6 lowercase hex characters."""
    return secrets.token_hex(3)


# --- queue ids and derived names --------------------------------------------------------------


class QueueIdParts(NamedTuple):
    """The parts a queue id is made of."""

    symbol: str
    type: str
    day: date
    short: str

    def __str__(self) -> str:
        return queue_id(self.symbol, self.type, self.day, self.short)


def queue_id(symbol: str, type_: str, day: date, short: str) -> str:
    """Return the queue id `wf-<symbol>-<type>-<YYYYMMDD>-<short>`, checked."""
    _require_str(symbol, "symbol")
    sym = check_symbol(symbol.upper()).lower()
    qid = f"wf-{sym}-{check_type(type_)}-{_day(day):%Y%m%d}-{check_short_id(short)}"
    # The id is used as a label value on Jobs and, with '-data', as a topic name.
    try:
        check_label_value(qid)
        check_kafka_topic(qid + "-data")
    except InvalidName as exc:
        raise InvalidName(
            f"queue id {qid!r} cannot be used as a label value and topic name: {exc}"
        ) from None
    return qid


def parse_queue_id(qid: str) -> QueueIdParts:
    """Split a queue id into its parts (symbol upper case), raising `InvalidName` if malformed."""
    _require_str(qid, "queue id")
    m = _QUEUE_ID_RE.fullmatch(qid)
    if not m:
        raise InvalidName(
            f"invalid queue id {qid!r}: expected 'wf-<symbol>-<type>-<YYYYMMDD>-<short>', "
            "e.g. 'wf-btcusdt-api_candles_1m-20240801-abc123'"
        )
    try:
        day = datetime.strptime(m["day"], "%Y%m%d").date()
    except ValueError:
        raise InvalidName(f"invalid queue id {qid!r}: {m['day']!r} is not a date") from None
    parts = QueueIdParts(m["symbol"].upper(), m["type"], day, m["short"])
    # Rebuilding runs every rule (part shapes, length limits) in one place.
    try:
        queue_id(*parts)
    except InvalidName as exc:
        raise InvalidName(f"invalid queue id {qid!r}: {exc}") from None
    return parts


def check_queue_id(qid: str) -> str:
    """Return `qid` if it is a well-formed queue id, else raise `InvalidName`."""
    parse_queue_id(qid)
    return qid


_HANDLE_ID_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,61}[A-Za-z0-9])?")


def check_queue_handle_id(queue_id: Any) -> str:
    """Return `queue_id` if it can name a queue at all, else raise `InvalidName`.

    1..63 characters of A-Z a-z 0-9 . _ -, starting and ending with a letter or digit: the
    rule a topic name (`<queue id>-data`) and a Kubernetes label value share. Hand-made ids
    (a dummy service's) pass; workflows make `wf-<symbol>-<type>-<YYYYMMDD>-<short>`.
    """
    if not isinstance(queue_id, str) or not _HANDLE_ID_RE.fullmatch(queue_id):
        raise InvalidName(
            f"invalid queue id {queue_id!r}: 1..63 characters of A-Z a-z 0-9 . _ -, "
            "starting and ending with a letter or digit "
            "(e.g. wf-btcusdt-api_candles_1m-20240801-abc123)"
        )
    return queue_id


def data_topic(qid: str) -> str:
    """Return the data topic of queue `qid`: `<qid>-data`."""
    return check_kafka_topic(_require_str(qid, "queue id") + "-data")


def dlq_topic(topic: str) -> str:
    """Return the dead-letter topic of `topic`: `<topic>-dlq`."""
    return check_kafka_topic(_require_str(topic, "topic") + "-dlq")


DIGIT_SYMBOL_PREFIX = "sym-"
"""Prefix of the collections of symbols that start with a digit (`sym-1inchusdt_...`)."""


def collection_name(symbol: str, type_: str, day: date) -> str:
    """Return the ArangoDB collection `<symbol>_<type>_<YYYY>_<MM>_<DD>`, checked.

    ArangoDB's traditional names (the only ones before 3.12, and still what a server started
    without `--database.extended-names` accepts) must start with a letter, so a symbol that
    starts with a digit (1INCHUSDT, 1000SATSUSDT) gets the prefix `sym-`:
    `sym-1inchusdt_api_candles_1m_2024_08_01`. No other platform name holds a `-`, so the
    prefix is unambiguous and `parse_collection_name` reverses every name made here.
    """
    _require_str(symbol, "symbol")
    sym = check_symbol(symbol.upper()).lower()
    prefix = DIGIT_SYMBOL_PREFIX if sym[0].isdigit() else ""
    return check_collection_name(f"{prefix}{sym}_{check_type(type_)}_{_day(day):%Y_%m_%d}")


def parse_collection_name(name: str) -> tuple[str, str, date]:
    """Return (SYMBOL, type, day) of a collection made by `collection_name`, else raise."""
    _require_str(name, "collection name")
    m = _COLLECTION_NAME_RE.fullmatch(name)
    if m is not None:
        try:
            day = datetime.strptime(m["day"], "%Y_%m_%d").date()
            parts = (m["symbol"].upper(), m["type"], day)
            if collection_name(*parts) == name:
                return parts
        except (ValueError, InvalidName):
            pass
    raise InvalidName(
        f"invalid collection name {name!r}: expected '<symbol>_<type>_<YYYY>_<MM>_<DD>', e.g. "
        "'btcusdt_api_candles_1m_2024_08_01' (a symbol starting with a digit: 'sym-1inchusdt_...')"
    )


def producer_id(target: str, short: str) -> str:
    """Return the telemetry producer id `<target>__<short>`."""
    return f"{check_target(target)}__{check_short_id(short)}"


def job_name(target: str, symbol: str, short: str) -> str:
    """Return the Kubernetes Job name `job-<target>-<symbol>-<short>`, checked."""
    _require_str(symbol, "symbol")
    sym = check_symbol(symbol.upper()).lower()
    return check_dns1123_label(f"job-{check_target(target)}-{sym}-{check_short_id(short)}")


def _day(day: date) -> date:
    if not isinstance(day, date):
        raise InvalidName(f"day must be a date, got {type(day).__name__} {day!r}")
    return day
