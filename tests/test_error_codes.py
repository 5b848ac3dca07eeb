"""Every error and failure code is declared once (an enum per app) and listed
where merchants read: the README and the OpenAPI schema."""

import pytest
import yaml
from django.core.management import call_command

from config.schema import (
    API_ERROR_CODES,
    FAILURE_CODES,
    GATEWAY_ERROR_CODES,
    REFUND_FAILURE_CODES,
)
from payments.error_codes import RefundFailureCode
from tests.stack import ROOT

README = (ROOT / "README.md").read_text()


@pytest.mark.parametrize(
    "code", [m.value for enum in API_ERROR_CODES.values() for m in enum]
)
def test_the_readme_lists_every_api_error_code(code):
    assert f"`{code}`" in README


@pytest.mark.parametrize(
    "code", [m.value for enum in (*FAILURE_CODES, RefundFailureCode) for m in enum]
)
def test_the_readme_lists_every_failure_code(code):
    assert f"`{code}`" in README


def test_the_schema_lists_every_api_error_code_and_failure_code(tmp_path):
    out = tmp_path / "schema.yaml"
    call_command("spectacular", "--file", str(out))
    schema = yaml.safe_load(out.read_text())
    codes = schema["components"]["schemas"]["Error"]["properties"]["error"][
        "properties"
    ]["code"]["enum"]
    assert codes == sorted({m.value for enum in API_ERROR_CODES.values() for m in enum})
    described = schema["components"]["schemas"]["Payment"]["properties"][
        "failure_code"
    ]["description"]
    assert all(f"`{m.value}`" in described for e in FAILURE_CODES for m in e)
    refund = schema["components"]["schemas"]["Refund"]["properties"]["failure_code"]
    assert all(
        f"`{m.value}`" in refund["description"] for e in REFUND_FAILURE_CODES for m in e
    )
    every = [op for ops in schema["paths"].values() for op in ops.values()]
    assert all("4XX" in op["responses"] for op in every)


def test_no_code_string_is_declared_twice_with_two_meanings():
    """An app's API codes and its gateway classes never share a member name
    with a different value (one definition of each code)."""
    seen: dict[str, str] = {}
    for enum in [*API_ERROR_CODES.values(), *FAILURE_CODES, GATEWAY_ERROR_CODES]:
        for member in enum:
            assert seen.setdefault(member.name, member.value) == member.value
