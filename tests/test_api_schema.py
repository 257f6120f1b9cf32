"""schemathesis, from the served OpenAPI document, against a live `serve-api` process: every
answer has a status, content type, headers and body the document declares, and no input a
client can send makes the server fail (5xx).

Bounded to run in well under a minute: a few examples per route; starting a queue only with
invalid bodies (a valid one would launch Jobs), the others with any input.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from api_server import AUTH, Api, serve
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as examples
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from streamforge_nb.settings import Settings

CHECKS = [
    not_a_server_error, status_code_conformance, content_type_conformance,
    response_headers_conformance, response_schema_conformance,
]  # fmt: skip
READ_ONLY = ["health", "listQueues", "getQueue", "pingQueue", "stopQueue"]


@pytest.fixture(scope="module")
def api(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    with serve(settings, tmp_path_factory.mktemp("api-schema")) as served:
        yield served


def _run(api: Api, operations: list[str], mode: GenerationMode, count: int) -> None:
    schema = schemathesis.openapi.from_url(api.url + "/openapi.json", timeout=30)
    chosen = schema.include(operation_id=operations)
    strategy = chosen.as_strategy(mode)

    @given(case=strategy)
    @examples(
        max_examples=count, deadline=None, database=None, derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )  # fmt: skip
    def call(case: schemathesis.Case[Any]) -> None:
        case.call_and_validate(headers=AUTH, checks=CHECKS, timeout=60)

    call()


def test_routes_answer_as_their_document_says(api: Api) -> None:
    _run(api, READ_ONLY, GenerationMode.POSITIVE, 25)


def test_invalid_input_is_refused_as_the_document_says(api: Api, tmp_path: Path) -> None:
    before = api.get("/queues").json()
    _run(api, ["startQueue", *READ_ONLY], GenerationMode.NEGATIVE, 25)
    assert api.get("/queues").json() == before  # nothing was started
