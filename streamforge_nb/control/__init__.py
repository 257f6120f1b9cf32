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
        ProducerState,
        ended,
        fold,
        queue_status,
        rtt_summary,
    )
    from streamforge_nb.control.worker import (
        Worker,
    )

_EXPORTS = {
    "PongReply": "streamforge_nb.control.queue",
    "ProducerState": "streamforge_nb.control.telemetry",
    "Queue": "streamforge_nb.control.queue",
    "Worker": "streamforge_nb.control.worker",
    "ended": "streamforge_nb.control.telemetry",
    "fold": "streamforge_nb.control.telemetry",
    "new_record": "streamforge_nb.control.state",
    "queue_status": "streamforge_nb.control.telemetry",
    "refresh": "streamforge_nb.control.state",
    "rtt_summary": "streamforge_nb.control.telemetry",
}
__getattr__, __dir__ = attach(__name__, _EXPORTS)

__all__ = [
    "PongReply",
    "ProducerState",
    "Queue",
    "Worker",
    "ended",
    "fold",
    "new_record",
    "queue_status",
    "refresh",
    "rtt_summary",
]

