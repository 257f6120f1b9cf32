"""The control plane: telemetry folded into state, `Queue`, queue state, the worker loop."""

from __future__ import annotations

from typing import TYPE_CHECKING

from streamforge_nb._lazy import attach

if TYPE_CHECKING:
    from streamforge_nb.control.cancel import cancel as cancel
    from streamforge_nb.control.follower import Follower as Follower
    from streamforge_nb.control.follower import PongReply as PongReply
    from streamforge_nb.control.lifecycle import cleanup as cleanup
    from streamforge_nb.control.lifecycle import delete_data_topics as delete_data_topics
    from streamforge_nb.control.lifecycle import notebooks as notebooks
    from streamforge_nb.control.lifecycle import open_notebook as open_notebook
    from streamforge_nb.control.lifecycle import queue_record as queue_record
    from streamforge_nb.control.lifecycle import sink_lag as sink_lag
    from streamforge_nb.control.queue import DEFAULT_WAIT_S as DEFAULT_WAIT_S
    from streamforge_nb.control.queue import Queue as Queue
    from streamforge_nb.control.state import launcher_jobs as launcher_jobs
    from streamforge_nb.control.state import new_record as new_record
    from streamforge_nb.control.state import refresh as refresh
    from streamforge_nb.control.telemetry import ENDED_STATUSES as ENDED_STATUSES
    from streamforge_nb.control.telemetry import MALFORMED as MALFORMED
    from streamforge_nb.control.telemetry import SETTLE_S as SETTLE_S
    from streamforge_nb.control.telemetry import JobView as JobView
    from streamforge_nb.control.telemetry import MalformedCounter as MalformedCounter
    from streamforge_nb.control.telemetry import ProducerState as ProducerState
    from streamforge_nb.control.telemetry import decode_telemetry as decode_telemetry
    from streamforge_nb.control.telemetry import ended as ended
    from streamforge_nb.control.telemetry import event_line as event_line
    from streamforge_nb.control.telemetry import fold as fold
    from streamforge_nb.control.telemetry import merge_jobs as merge_jobs
    from streamforge_nb.control.telemetry import printable as printable
    from streamforge_nb.control.telemetry import queue_status as queue_status
    from streamforge_nb.control.telemetry import rtt_summary as rtt_summary
    from streamforge_nb.control.telemetry import safe_count as safe_count
    from streamforge_nb.control.telemetry import safe_timestamp as safe_timestamp
    from streamforge_nb.control.worker import Worker as Worker

_EXPORTS = {
    "DEFAULT_WAIT_S": "streamforge_nb.control.queue",
    "ENDED_STATUSES": "streamforge_nb.control.telemetry",
    "Follower": "streamforge_nb.control.follower",
    "JobView": "streamforge_nb.control.telemetry",
    "MALFORMED": "streamforge_nb.control.telemetry",
    "MalformedCounter": "streamforge_nb.control.telemetry",
    "PongReply": "streamforge_nb.control.follower",
    "ProducerState": "streamforge_nb.control.telemetry",
    "Queue": "streamforge_nb.control.queue",
    "SETTLE_S": "streamforge_nb.control.telemetry",
    "Worker": "streamforge_nb.control.worker",
    "cancel": "streamforge_nb.control.cancel",
    "cleanup": "streamforge_nb.control.lifecycle",
    "delete_data_topics": "streamforge_nb.control.lifecycle",
    "notebooks": "streamforge_nb.control.lifecycle",
    "open_notebook": "streamforge_nb.control.lifecycle",
    "queue_record": "streamforge_nb.control.lifecycle",
    "sink_lag": "streamforge_nb.control.lifecycle",
    "decode_telemetry": "streamforge_nb.control.telemetry",
    "ended": "streamforge_nb.control.telemetry",
    "event_line": "streamforge_nb.control.telemetry",
    "fold": "streamforge_nb.control.telemetry",
    "launcher_jobs": "streamforge_nb.control.state",
    "merge_jobs": "streamforge_nb.control.telemetry",
    "new_record": "streamforge_nb.control.state",
    "printable": "streamforge_nb.control.telemetry",
    "queue_status": "streamforge_nb.control.telemetry",
    "refresh": "streamforge_nb.control.state",
    "rtt_summary": "streamforge_nb.control.telemetry",
    "safe_count": "streamforge_nb.control.telemetry",
    "safe_timestamp": "streamforge_nb.control.telemetry",
}
__getattr__, __dir__ = attach(__name__, _EXPORTS)
__all__ = [*_EXPORTS]
