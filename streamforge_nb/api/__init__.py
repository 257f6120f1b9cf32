"""The queue-manager API: OpenAPI document, ASGI app and server (`streamforge-nb serve-api`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from streamforge_nb._lazy import attach

if TYPE_CHECKING:
    from streamforge_nb.api.allow import AllowList as AllowList
    from streamforge_nb.api.app import QueueManagerApp as QueueManagerApp
    from streamforge_nb.api.models import CancelRequest as CancelRequest
    from streamforge_nb.api.models import CancelResponse as CancelResponse
    from streamforge_nb.api.models import FieldProblem as FieldProblem
    from streamforge_nb.api.models import Health as Health
    from streamforge_nb.api.models import PingRequest as PingRequest
    from streamforge_nb.api.models import PingResponse as PingResponse
    from streamforge_nb.api.models import PongItem as PongItem
    from streamforge_nb.api.models import Problem as Problem
    from streamforge_nb.api.models import ProducerCancel as ProducerCancel
    from streamforge_nb.api.models import ProducerStatus as ProducerStatus
    from streamforge_nb.api.models import QueueDetail as QueueDetail
    from streamforge_nb.api.models import QueueList as QueueList
    from streamforge_nb.api.models import QueueSummary as QueueSummary
    from streamforge_nb.api.models import StartRequest as StartRequest
    from streamforge_nb.api.models import StartResponse as StartResponse
    from streamforge_nb.api.models import StopRequest as StopRequest
    from streamforge_nb.api.models import StopResponse as StopResponse
    from streamforge_nb.api.openapi import OPENAPI_FILE as OPENAPI_FILE
    from streamforge_nb.api.openapi import main as main
    from streamforge_nb.api.openapi import openapi_document as openapi_document
    from streamforge_nb.api.openapi import write_openapi as write_openapi
    from streamforge_nb.api.server import ApiServer as ApiServer
    from streamforge_nb.api.server import is_loopback as is_loopback

_EXPORTS = {
    "AllowList": "streamforge_nb.api.allow",
    "ApiServer": "streamforge_nb.api.server",
    "CancelRequest": "streamforge_nb.api.models",
    "CancelResponse": "streamforge_nb.api.models",
    "FieldProblem": "streamforge_nb.api.models",
    "Health": "streamforge_nb.api.models",
    "OPENAPI_FILE": "streamforge_nb.api.openapi",
    "PingRequest": "streamforge_nb.api.models",
    "PingResponse": "streamforge_nb.api.models",
    "PongItem": "streamforge_nb.api.models",
    "Problem": "streamforge_nb.api.models",
    "ProducerCancel": "streamforge_nb.api.models",
    "ProducerStatus": "streamforge_nb.api.models",
    "QueueDetail": "streamforge_nb.api.models",
    "QueueList": "streamforge_nb.api.models",
    "QueueManagerApp": "streamforge_nb.api.app",
    "QueueSummary": "streamforge_nb.api.models",
    "StartRequest": "streamforge_nb.api.models",
    "StartResponse": "streamforge_nb.api.models",
    "StopRequest": "streamforge_nb.api.models",
    "StopResponse": "streamforge_nb.api.models",
    "is_loopback": "streamforge_nb.api.server",
    "main": "streamforge_nb.api.openapi",
    "openapi_document": "streamforge_nb.api.openapi",
    "write_openapi": "streamforge_nb.api.openapi",
}
__getattr__, __dir__ = attach(__name__, _EXPORTS)
__all__ = [*_EXPORTS]
