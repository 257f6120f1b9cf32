"""The queue-manager API's OpenAPI 3.1 document, generated from `api.models`.

Components come from pydantic's `models_json_schema`, as the messages' JSON Schemas do
(`platform.schemas`); the package ships the rendered document as `schemas/openapi.json` and a
test fails when it drifts. `python -m streamforge_nb.api.openapi [DIR]` rewrites it.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from streamforge_nb import __version__
from streamforge_nb.api.models import (
    CancelRequest,
    CancelResponse,
    ErrorResponse,
    PingRequest,
    PingResponse,
    QueueDetail,
    QueueList,
    StartRequest,
    StartResponse,
    StopRequest,
    StopResponse,
)
from streamforge_nb.platform.schemas import render_schema, schemas_dir

__all__ = ["OPENAPI_FILE", "Operation", "main", "openapi_document", "write_openapi"]

OPENAPI_FILE = "openapi.json"
"""The document's name in the package's schemas folder."""
_REF = "#/components/schemas/{model}"
_ERROR_REF = {"$ref": _REF.format(model="ErrorResponse")}


class Operation:
    """One route: method, path, summary, request model, success status and model, errors."""

    def __init__(
        self,
        method: Literal["get", "post"],
        path: str,
        operation_id: str,
        summary: str,
        response: type[BaseModel],
        *,
        request: type[BaseModel] | None = None,
        status: int = 200,
        errors: dict[int, str] | None = None,
    ) -> None:
        self.method, self.path, self.operation_id = method, path, operation_id
        self.summary, self.response, self.request = summary, response, request
        self.status = status
        self.errors = {401: "No or a wrong bearer token.", **(errors or {})}


_QUEUE = {404: "No such queue (no queue-state record and no telemetry)."}
_BAD = {400: "Bad input, named in the error."}
OPERATIONS = [
    Operation(
        "post", "/queues", "startQueue", "Start the candle workflow (loader -> sink).",
        StartResponse, request=StartRequest, status=201,
        errors={**_BAD, 409: "The queue id was launched already (the error names when, how)."},
    ),
    Operation("get", "/queues", "listQueues", "List launched queues.", QueueList),
    Operation(
        "get", "/queues/{queue_id}", "getQueue", "A queue's status per producer.",
        QueueDetail, errors={**_BAD, **_QUEUE},
    ),
    Operation(
        "post", "/queues/{queue_id}/stop", "stopQueue", "Send `stop`; wait for the acks.",
        StopResponse, request=StopRequest,
        errors={**_BAD, **_QUEUE, 504: "No worker acknowledged within the timeout."},
    ),
    Operation(
        "post", "/queues/{queue_id}/cancel", "cancelQueue",
        "Send `stop`, then delete the queue's Jobs after the grace.", CancelResponse,
        request=CancelRequest, errors={**_BAD, **_QUEUE},
    ),
    Operation(
        "post", "/queues/{queue_id}/ping", "pingQueue", "Send `ping`; return the pongs.",
        PingResponse, request=PingRequest,
        errors={**_BAD, 504: "No pong within the timeout."},
    ),
]  # fmt: skip


def _components() -> dict[str, Any]:
    pairs: list[tuple[type[BaseModel], JsonSchemaMode]] = [(ErrorResponse, "serialization")]
    for op in OPERATIONS:
        pairs.append((op.response, "serialization"))
        if op.request is not None:
            pairs.append((op.request, "validation"))
    _, top = models_json_schema(pairs, by_alias=True, ref_template=_REF)
    return dict(top.get("$defs", {}))


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _operation(op: Operation) -> dict[str, Any]:
    responses: dict[str, Any] = {
        str(op.status): {
            "description": op.response.__doc__ or op.response.__name__,
            "content": _json({"$ref": _REF.format(model=op.response.__name__)}),
        }
    }
    for code, why in sorted(op.errors.items()):
        responses[str(code)] = {"description": why, "content": _json(_ERROR_REF)}
    body: dict[str, Any] = {"operationId": op.operation_id, "summary": op.summary}
    if "{queue_id}" in op.path:
        body["parameters"] = [
            {
                "name": "queue_id",
                "in": "path",
                "required": True,
                "description": "e.g. wf-btcusdt-api_candles_1m-20240801-abc123",
                "schema": {"type": "string"},
            }
        ]
    if op.request is not None:
        # Every field has a default but the start's: an empty body is a valid stop or ping.
        body["requestBody"] = {
            "required": op.request is StartRequest,
            "content": _json({"$ref": _REF.format(model=op.request.__name__)}),
        }
    body["responses"] = responses
    return body


def openapi_document() -> dict[str, Any]:
    """Return the OpenAPI 3.1 document of the queue-manager API (`api.app`)."""
    paths: dict[str, dict[str, Any]] = {
        "/openapi.json": {
            "get": {
                "operationId": "getOpenapi",
                "summary": "This document (no token needed).",
                "security": [],
                "responses": {"200": {"description": "The OpenAPI document."}},
            }
        }
    }
    for op in OPERATIONS:
        paths.setdefault(op.path, {})[op.method] = _operation(op)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "streamforge-nb queue-manager API",
            "version": __version__,
            "description": (
                "The operations streamforge-nb performs as the platform's queue-manager "
                "would, over HTTP: start a workflow, list queues, a queue's status, stop, "
                "cancel, ping. Served by `streamforge-nb serve-api`; not the platform's "
                "queue-manager service."
            ),
        },
        "servers": [{"url": "http://127.0.0.1:8080"}],
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "schemas": _components(),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


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
