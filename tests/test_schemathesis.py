"""schemathesis against the running server's own /openapi.json (issue 7 item 3).

Every REST operation is called with generated valid (positive) and invalid (negative)
input, with the bootstrap API token (Read + Edit) and with an invalid one; every reply
must be a non-5xx that conforms to the description (status code, content type, headers,
body schema), and invalid input must be refused. Examples per operation and mode are
bounded (``ARTIFACTD_FUZZ_EXAMPLES``, default 15) so the module stays within a few
minutes; ``scripts/soak`` raises the bound.
"""

from __future__ import annotations

import os

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.core.parameters import ParameterLocation
from schemathesis.checks import (
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.specs.openapi.checks import ignored_auth, unsupported_method

from artifactd.testing import ServerProcess

EXAMPLES = int(os.environ.get("ARTIFACTD_FUZZ_EXAMPLES", "15"))
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_headers_conformance,
          response_schema_conformance, negative_data_rejection, ignored_auth, unsupported_method]
TALLY = {"requests": 0, "5xx": 0, "operations": 0}


def _operations(server: ServerProcess, token: str) -> list:
    config = schemathesis.Config.from_dict({
        # Unknown query parameters are ignored, as the hosted API does.
        "generation": {"allow-extra-parameters": False},
        "headers": {"Authorization": f"Bearer {token}"},
    })
    schema = schemathesis.openapi.from_url(f"{server.base_url}/openapi.json", config=config)
    ops = [result.ok() for result in schema.get_all_operations()]
    ops = [op for op in ops if op.path.startswith("/client/v4/")]  # the REST API (not the OAuth pages)
    # Not the import route: a generated URL would make the server connect to an arbitrary
    # host; tests/test_imports.py drives it against local remotes only.
    ops = [op for op in ops if not (op.method.upper() == "POST" and op.path.endswith("/import"))]
    assert len(ops) >= 11
    return ops


@pytest.fixture(scope="module")
def operations(server: ServerProcess) -> dict[bool, list]:
    server.create_repo("default", "seed")  # so generated names sometimes hit a real repo
    return {True: _operations(server, server.api_token), False: _operations(server, BAD_TOKEN)}


BAD_TOKEN = "artd_" + "A" * 40


def _exercise(server: ServerProcess, operation, mode: GenerationMode, valid_token: bool, examples: int) -> None:
    token = server.api_token if valid_token else BAD_TOKEN
    state = {"n": 0}

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def run(case) -> None:
        state["n"] += 1
        # Mostly our own account, so that generated requests reach the services (unless
        # the path is the component this negative case breaks).
        if (valid_token and case.path_parameters and "account_id" in case.path_parameters and state["n"] % 4
                and not case.meta.is_negative_at(ParameterLocation.PATH)):
            case.path_parameters["account_id"] = server.account_id
        response = case.call(base_url=server.base_url, headers={"Authorization": f"Bearer {token}"})
        TALLY["requests"] += 1
        TALLY["5xx"] += response.status_code >= 500
        case.validate_response(response, checks=CHECKS)

    try:
        run()
    except Unsatisfiable:
        assert mode is GenerationMode.NEGATIVE  # nothing to break in an operation without input


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=["valid", "invalid"])
def test_every_operation_conforms_with_a_valid_token(server: ServerProcess, operations: list, mode):
    for op in operations[True]:
        TALLY["operations"] += 1
        _exercise(server, op, mode, True, EXAMPLES)


def test_every_operation_conforms_with_an_invalid_token(server: ServerProcess, operations: list):
    for op in operations[False]:
        _exercise(server, op, GenerationMode.POSITIVE, False, max(3, EXAMPLES // 5))
        _exercise(server, op, GenerationMode.NEGATIVE, False, max(3, EXAMPLES // 5))


def test_server_still_healthy_after_fuzzing(server: ServerProcess):
    assert httpx.get(f"{server.base_url}/healthz").status_code == 200
    print(f"schemathesis: {TALLY['requests']} requests, {TALLY['5xx']} 5xx")
    assert TALLY["5xx"] == 0
