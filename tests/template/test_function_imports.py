"""What each Lambda function loads at cold start (import + init on the AWS backend), in a fresh
interpreter: never the packages whose import time the cold-start budget cannot afford (README,
"Cold start"), and on the token, discovery and registration functions not even the JWT stack,
which only some of their requests need."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from support.template import ROOT, load_template

NEVER = ("boto3", "s3transfer", "pydantic", "pydantic_core")
ON_FIRST_USE = ("jwt", "cryptography")  # loaded by the requests that verify or check keys
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "cold", "AWS_SECRET_ACCESS_KEY": "cold", "AWS_DEFAULT_REGION": "us-east-1",
    "TOKENMINT_BACKEND": "aws", "TOKENMINT_TABLE": "tokenmint-cold",
    "TOKENMINT_SIGNING_KEY_ID": "arn:aws:kms:us-east-1:111122223333:key/cold", "POWERTOOLS_LOG_LEVEL": "WARNING",
}


def handler_modules() -> list[str]:
    resources = load_template()["Resources"].values()
    return sorted({resource["Properties"]["Handler"].rpartition(".")[0] for resource in resources
                   if resource.get("Type") == "AWS::Serverless::Function"})


def loaded_at_cold_start(module: str) -> set[str]:
    code = (f"import sys, json; import {module}; from tokenmint import runtime; runtime.backend(); "
            "print(json.dumps(sorted({name.partition('.')[0] for name in sys.modules})))")
    env = {**os.environ, **AWS_ENV, "PYTHONPATH": str(ROOT / "functions")}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60,
                            check=True)
    return set(json.loads(result.stdout))


def test_every_function_in_the_template_is_checked():
    assert len(handler_modules()) == 8


@pytest.mark.parametrize("module", handler_modules())
def test_a_cold_start_loads_neither_boto3_nor_pydantic(module):
    assert loaded_at_cold_start(module).isdisjoint(NEVER)


@pytest.mark.parametrize("module", ["tokenmint.handlers.token", "tokenmint.handlers.discovery",
                                    "tokenmint.handlers.registration"])
def test_functions_that_sign_or_publish_load_the_jwt_stack_only_when_a_request_needs_it(module):
    assert loaded_at_cold_start(module).isdisjoint(ON_FIRST_USE)
