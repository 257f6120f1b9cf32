"""The queue-manager API's OpenAPI 3.1 document, from the FastAPI app's routes and models.

FastAPI renders the routes and `api.models`; `finish_document` (`api.document`, which the
app's routes use too) adds what it does not know:
the real server URL, errors as `application/problem+json` and their headers (Location,
WWW-Authenticate, Allow, Retry-After). The package ships the document rendered for
`serve-api`'s default address as `schemas/openapi.json`, and a test fails when it drifts;
`python -m streamforge_nb.api.openapi [DIR]` rewrites it. A served document names the URL
the client reached.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from streamforge_nb.api.document import ROUTE_PROBLEMS, finish_document
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
