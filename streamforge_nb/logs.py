"""Structured JSON logs for workers: one object per line, as the platform's log tooling expects.

No secret reaches a log: kafka-python dumps its whole configuration, password included, at
debug level. `SecretFilter` redacts the passwords of the settings in use, and any value of a
password-like key, from every record it sees; it sits on the JSON handler and on the Kafka
clients' own loggers, so it holds when the user configures logging themselves.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from streamforge_nb.settings import Settings

__all__ = [
    "JsonFormatter",
    "KernelOutputFilter",
    "SecretFilter",
    "configure_json_logging",
    "guard_secrets",
    "redact",
]

REDACTED = "***"
# Shorter values are not looked for in free text: redacting every "abc" would garble the logs
# and such a password is not worth hiding anyway.
_MIN_SECRET = 4
# A value given to a password-like key, as kafka-python (sasl_plain_password, ssl_password),
# librdkafka (sasl.password, ssl.key.password) and our environment (KAFKA_PASSWORD) spell them,
# in dict reprs (`'k': 'v'`), properties (`k=v`) and JSON (`"k": "v"`).
_SECRET_ITEM = re.compile(
    r"""(?P<key>[\w.-]*(?:password|passwd|secret)['"]?\s*[:=]\s*)"""
    r"""(?:'(?P<single>[^']*)'|"(?P<double>[^"]*)"|(?P<bare>[^\s'",;)}\]]+))""",
    re.IGNORECASE,
)
_UNSET = {"", "None", "null", REDACTED, "[redacted]"}
_lock = threading.Lock()
_secrets: tuple[str, ...] = ()  # replaced whole, never mutated: readers need no lock
# The loggers of the Kafka clients the library builds (kafka-python's; librdkafka's lines are
# routed to streamforge_nb.librdkafka by `make_bulk_consumer`).
_CLIENT_LOGGERS = ("kafka", "streamforge_nb.librdkafka")

# LogRecord attributes that are not user-supplied `extra` fields.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


def _hide_item(match: re.Match[str]) -> str:
    value = match.group("single") or match.group("double") or match.group("bare") or ""
    if value in _UNSET:
        return match.group(0)
    quote = "'" if match.group("single") is not None else '"' if match.group("double") else ""
    return f"{match.group('key')}{quote}{REDACTED}{quote}"


def redact(text: str) -> str:
    """Return `text` with every known secret and password-like setting replaced by ***."""
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return _SECRET_ITEM.sub(_hide_item, text)


def remember_secrets(*values: str | None) -> None:
    """Add `values` to the secrets every `SecretFilter` redacts."""
    global _secrets
    new = {v for v in values if v and len(v) >= _MIN_SECRET}
    with _lock:
        if not new.issubset(_secrets):
            # Longest first: a secret containing another is hidden whole.
            _secrets = tuple(sorted(new.union(_secrets), key=len, reverse=True))


class SecretFilter(logging.Filter):
    """Redact secrets from a record's message (its args merged in) and traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record: logging reports it itself when it formats
            return True
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            trace = logging.Formatter().formatException(record.exc_info)
            if redact(trace) != trace:
                # The formatter prints exc_text when set instead of formatting exc_info anew.
                record.exc_text, record.exc_info = redact(trace), None
        return True


_FILTER = SecretFilter()


def guard_secrets(settings: Settings | None = None) -> None:
    """Redact `settings`' passwords, and put the filter on the Kafka clients' loggers.

    Called for every client the library builds, before it is built: kafka-python logs its
    configuration from its constructor. Loggers created since the last call get it too.
    """
    if settings is not None:
        secrets = (settings.kafka_password, settings.arango_password)
        remember_secrets(*(s.get_secret_value() for s in secrets if s is not None))
    for name in _CLIENT_LOGGERS:
        logging.getLogger(name).addFilter(_FILTER)  # idempotent
    # A logger's filters see only its own records, not its children's: each needs it.
    for name, logger in list(logging.root.manager.loggerDict.items()):
        if isinstance(logger, logging.Logger) and name.startswith(
            tuple(p + "." for p in _CLIENT_LOGGERS)
        ):
            logger.addFilter(_FILTER)


# papermill's logger: with log_output it logs a payload notebook's stdout at info and its
# stderr at warning, whatever the kernel's own log line says.
_KERNEL_OUTPUT = "papermill"


def _is_kernel_output(record: logging.LogRecord) -> bool:
    return record.name == _KERNEL_OUTPUT and record.levelno in (logging.INFO, logging.WARNING)


def _kernel_lines(record: logging.LogRecord, entry: dict[str, Any]) -> str:
    """A notebook's output as JSON lines: the kernel's own JSON log lines as they are (their
    level kept), any other line as an object of ours (stdout info, stderr warning)."""
    lines = []
    for line in record.getMessage().splitlines():  # \r too: a progress bar's updates
        if not line.strip():
            continue
        if line.startswith("{"):
            try:
                parsed = json.loads(line)
            except ValueError:
                parsed = None
            if isinstance(parsed, dict) and "level" in parsed:
                lines.append(redact(json.dumps(parsed, default=str)))
                continue
        lines.append(redact(json.dumps({**entry, "msg": line}, default=str)))
    return "\n".join(lines)


class KernelOutputFilter(logging.Filter):
    """Drop papermill's records of blank notebook output (they would be empty log lines)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (_is_kernel_output(record) and not record.getMessage().strip())


class JsonFormatter(logging.Formatter):
    """Render a record as one JSON object with its `extra` fields.

    papermill's records of a notebook's output become one object per output line, the
    kernel's own JSON lines unchanged (`_kernel_lines`).
    """

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": round(record.created, 3),
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + "Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if _is_kernel_output(record):
            return _kernel_lines(record, entry)
        entry.update({k: v for k, v in vars(record).items() if k not in _STANDARD})
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:  # a traceback `SecretFilter` redacted
            entry["exc"] = record.exc_text
        # `extra` fields too: the filter only cleans the message and the traceback.
        return redact(json.dumps(entry, default=str))


def configure_json_logging(debug: bool = False, stream: Any = None) -> None:
    """Send the root logger's records to `stream` (stderr) as JSON lines."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    # On the handler, it sees every logger's records, not only the Kafka clients'.
    handler.addFilter(_FILTER)
    handler.addFilter(KernelOutputFilter())
    guard_secrets()
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if debug else logging.INFO)
    # kafka-python is chatty at INFO; its warnings still come through.
    logging.getLogger("kafka").setLevel(logging.DEBUG if debug else logging.WARNING)
