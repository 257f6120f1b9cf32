"""The OpenAPI document's parts the app's routes declare: each route's problem responses, and
`finish_document`, which adds what FastAPI does not know (the server URL, errors as
`application/problem+json`, their headers). `api.openapi` renders the whole document.
"""

from __future__ import annotations

import copy
from typing import Any

__all__ = ["ROUTE_PROBLEMS", "finish_document"]

_PROBLEM = "application/problem+json"
_WHY = {
    401: "No or a wrong bearer token (see WWW-Authenticate).",
    404: "No such queue (no queue-state record and no telemetry).",
    405: "Another method than this route's (see Allow).",
    409: "The request conflicts with the queue's state (named in the problem).",
    413: "The request body is over the server's limit.",
    422: "Bad input; each field named in `errors`.",
    500: "A fault of the server (see its log).",
    502: "The Kafka broker or the queue-state store failed.",
    503: "The server is not set up for it (e.g. no kubeconfig), or a queue's history is "
    "still being read (see Retry-After).",
    504: "No answer within the timeout.",
}
_CONFLICT = {
    "startQueue": "The queue id was launched already, or the Idempotency-Key was used for "
    "another body.",
    "stopQueue": "The queue has ended already: nothing to stop (`queue_status` says how).",
}
_PUBLIC = (405, 413, 500)
_STATUSES = {
    "health": _PUBLIC,
    "metrics": _PUBLIC,
    "startQueue": (401, 405, 409, 413, 422, 500, 502, 503),
    "listQueues": (401, 405, 413, 422, 500, 502),
    "getQueue": (401, 404, 405, 413, 422, 500, 502, 503),
    "stopQueue": (401, 404, 405, 409, 413, 422, 500, 502, 503, 504),
    "cancelQueue": (401, 404, 405, 413, 422, 500, 502, 503),
    "pingQueue": (401, 404, 405, 413, 422, 500, 502, 503, 504),
}


def _responses(operation: str) -> dict[int | str, dict[str, Any]]:
    from streamforge_nb.api.models import Problem

    return {
        code: {
            "model": Problem,
            "description": _CONFLICT.get(operation, _WHY[code]) if code == 409 else _WHY[code],
        }
        for code in _STATUSES[operation]
    }


ROUTE_PROBLEMS = {operation: _responses(operation) for operation in _STATUSES}
"""Each route's error statuses, as FastAPI's `responses=` (the problems' bodies)."""
_HEADERS = {
    "201": {"Location": "The new queue: /queues/{queue_id}.",
            "Idempotent-Replayed": "true: the answer of an earlier request with this key."},
    "401": {"WWW-Authenticate": 'Bearer realm="streamforge-nb"'},
    "405": {"Allow": "The methods this route has."},
    "503": {"Retry-After": "Seconds to wait before asking again (a history being read)."},
}  # fmt: skip


def finish_document(generated: dict[str, Any], server_url: str) -> dict[str, Any]:
    """Return FastAPI's document with `server_url`, problem+json errors and their headers."""
    document = copy.deepcopy(generated)
    document["servers"] = [{"url": server_url}]
    for item in document["paths"].values():
        for operation in item.values():
            for code, response in operation["responses"].items():
                content = response.get("content", {})
                if int(code) >= 400 and "application/json" in content:
                    response["content"] = {_PROBLEM: content.pop("application/json")}
                for name, why in _HEADERS.get(code, {}).items():
                    response.setdefault("headers", {})[name] = {
                        "description": why, "schema": {"type": "string"},
                    }  # fmt: skip
    document["paths"]["/openapi.json"] = {
        "get": {
            "operationId": "getOpenapi",
            "summary": "This document (no token needed).",
            "responses": {"200": {"description": "The OpenAPI document."}},
        }
    }
    return document
