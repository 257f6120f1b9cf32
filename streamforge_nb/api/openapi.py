"""The queue-manager API's OpenAPI 3.1 document, from the FastAPI app's routes and models.

FastAPI renders the routes and `api.models`; `finish_document` adds what it does not know:
the real server URL, errors as `application/problem+json` and their headers (Location,
WWW-Authenticate, Allow, Retry-After). The package ships the document rendered for
`serve-api`'s default address as `schemas/openapi.json`, and a test fails when it drifts;
`python -m streamforge_nb.api.openapi [DIR]` rewrites it. A served document names the URL
the client reached.
"""

from __future__ import annotations

import copy
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from streamforge_nb.platform.schemas import render_schema, schemas_dir

__all__ = [
    "OPENAPI_FILE",
    "ROUTE_PROBLEMS",
    "finish_document",
    "main",
    "openapi_document",
    "write_openapi",
]

OPENAPI_FILE = "openapi.json"
"""The document's name in the package's schemas folder."""
DEFAULT_SERVER = "http://127.0.0.1:8080"
"""`serve-api`'s default address: the shipped document's server (a served one names its own)."""
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


def openapi_document(server_url: str = DEFAULT_SERVER) -> dict[str, Any]:
    """Return the OpenAPI 3.1 document of the queue-manager API (`api.app`)."""
    from streamforge_nb.api.app import QueueManagerApp
    from streamforge_nb.settings import Settings

    # The routes are the app's: one built without a server behind it renders them.
    return QueueManagerApp("document", Settings()).document(server_url)


def write_openapi(directory: Path | None = None) -> Path:
    """Write `openapi.json` into `directory` (default: the package's schemas folder)."""
    folder = Path(directory) if directory is not None else schemas_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / OPENAPI_FILE
    path.write_bytes(render_schema(openapi_document()))
    return path


def main(argv: Sequence[str] | None = None) -> int:
    """Write the OpenAPI document into the directory given (default: the package's)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) > 1:
        print("usage: python -m streamforge_nb.api.openapi [DIR]", file=sys.stderr)
        return 2
    print(write_openapi(Path(args[0]) if args else None))
    return 0


if __name__ == "__main__":
    sys.exit(main())
