"""JSON Schemas of the platform's messages, exported from the contract's models.

The package ships them in `streamforge_nb/schemas/` (`schemas_dir()`); a test fails when they
drift from the models. `python -m streamforge_nb.platform.schemas [DIR]` rewrites them.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import orjson
from pydantic import BaseModel

from streamforge_nb.platform.contract import (
    BaseCommand,
    Candle,
    Error,
    Finished,
    Interrupted,
    Loading,
    PingCommand,
    Pong,
    StartCommand,
    Started,
    StopCommand,
)

__all__ = ["json_schemas", "main", "render_schema", "schemas_dir", "write_schemas"]


def schemas_dir() -> Path:
    """Return the folder of JSON Schemas shipped inside the package."""
    return Path(str(resources.files("streamforge_nb").joinpath("schemas")))


_SCHEMA_MODELS: dict[str, type[BaseModel]] = {
    "start": StartCommand,
    "stop": StopCommand,
    "ping": PingCommand,
    "started": Started,
    "loading": Loading,
    "finished": Finished,
    "error": Error,
    "interrupted": Interrupted,
    "pong": Pong,
    "candle": Candle,
}


def json_schemas() -> dict[str, dict[str, Any]]:
    """Return the JSON Schema of every message, by name (`start`, ..., `pong`, `candle`)."""
    schemas = {}
    for name, model in _SCHEMA_MODELS.items():
        schema = model.model_json_schema(by_alias=True)
        # The tag has a default for Python callers, but on the wire it is what tells messages
        # apart: a message without it is rejected, so the schema requires it.
        tag = "command" if issubclass(model, BaseCommand) else "status"
        if tag in schema["properties"]:
            schema["properties"][tag].pop("default", None)
            schema["required"] = sorted({*schema.get("required", ()), tag})
        schemas[name] = schema
    return schemas


def render_schema(schema: dict[str, Any]) -> bytes:
    """Return `schema` as written to disk: sorted keys, 2-space indent, trailing newline."""
    return orjson.dumps(schema, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"


def write_schemas(directory: Path) -> list[Path]:
    """Write `<name>.schema.json` for every message into `directory`; remove stale ones."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    schemas = json_schemas()
    written = []
    for name, schema in schemas.items():
        path = directory / f"{name}.schema.json"
        path.write_bytes(render_schema(schema))
        written.append(path)
    # A schema left from a removed message would mislead readers of the directory.
    for path in directory.glob("*.schema.json"):
        if path.name.removesuffix(".schema.json") not in schemas:
            path.unlink()
    return written


def main(argv: Sequence[str] | None = None) -> int:
    """Write the JSON Schemas into the directory given (default: the package's own)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) > 1:
        print("usage: python -m streamforge_nb.platform.schemas [DIR]", file=sys.stderr)
        return 2
    for path in write_schemas(Path(args[0]) if args else schemas_dir()):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
