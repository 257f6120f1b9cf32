"""The control plane: telemetry folded into state, `Queue`, queue state, the worker loop."""

from __future__ import annotations

from typing import TYPE_CHECKING

from streamforge_nb._lazy import attach

if TYPE_CHECKING:
    from streamforge_nb.control.queue import (
        PongReply,
        Queue,
    )
    from streamforge_nb.control.state import (
        new_record,
        refresh,
    )
    from streamforge_nb.control.telemetry import (
        MALFORMED,
        MalformedCounter,
        ProducerState,
        ended,
        event_line,
        fold,
        printable,
        queue_status,
        rtt_summary,
        safe_count,
        safe_timestamp,
    )
    from streamforge_nb.control.worker import (
        Worker,
    )

_EXPORTS = {
    "MALFORMED": "streamforge_nb.control.telemetry",
    "MalformedCounter": "streamforge_nb.control.telemetry",
    "PongReply": "streamforge_nb.control.queue",
    "ProducerState": "streamforge_nb.control.telemetry",
    "Queue": "streamforge_nb.control.queue",
    "Worker": "streamforge_nb.control.worker",
    "ended": "streamforge_nb.control.telemetry",
    "event_line": "streamforge_nb.control.telemetry",
    "fold": "streamforge_nb.control.telemetry",
    "new_record": "streamforge_nb.control.state",
    "printable": "streamforge_nb.control.telemetry",
    "queue_status": "streamforge_nb.control.telemetry",
    "refresh": "streamforge_nb.control.state",
    "rtt_summary": "streamforge_nb.control.telemetry",
    "safe_count": "streamforge_nb.control.telemetry",
    "safe_timestamp": "streamforge_nb.control.telemetry",
}
__getattr__, __dir__ = attach(__name__, _EXPORTS)

__all__ = [
    "MALFORMED",
    "MalformedCounter",
    "PongReply",
    "ProducerState",
    "Queue",
    "Worker",
    "ended",
    "event_line",
    "fold",
    "new_record",
    "printable",
    "queue_status",
    "refresh",
    "rtt_summary",
    "safe_count",
    "safe_timestamp",
]

