"""OpenAPI additions that no view declares: the error object and every code.

drf-spectacular calls ``add_error_codes`` after it has built the schema
(``SPECTACULAR_SETTINGS["POSTPROCESSING_HOOKS"]``). The codes come from each
app's ``error_codes`` module, so the schema lists exactly what the code can say.
"""

from enum import StrEnum

from core.error_codes import ErrorCode as CoreErrorCode
from gateways.error_codes import DeclineCode
from gateways.error_codes import ErrorCode as GatewayErrorCode
from ledger.error_codes import ErrorCode as LedgerErrorCode
from payments.error_codes import ErrorCode as PaymentErrorCode
from payments.error_codes import FailureCode, RefundFailureCode
from vault.error_codes import ErrorCode as VaultErrorCode

# ``error.code`` of a refused request, by the app that owns it.
API_ERROR_CODES: dict[str, type[StrEnum]] = {
    "core": CoreErrorCode,
    "vault": VaultErrorCode,
    "ledger": LedgerErrorCode,
    "payments": PaymentErrorCode,
}
# A payment's ``failure_code``: Surge's own reasons and the test gateways'
# decline codes (a real processor's decline code is passed through as given).
FAILURE_CODES: tuple[type[StrEnum], ...] = (FailureCode, DeclineCode)
# Why a gateway call gave no answer: dead letters and logs, never an API error.
GATEWAY_ERROR_CODES: type[StrEnum] = GatewayErrorCode
# A refund's ``failure_code``: refused outright, or the gateway's code for why
# its retries got no answer.
REFUND_FAILURE_CODES: tuple[type[StrEnum], ...] = (RefundFailureCode, GatewayErrorCode)


def _values(*enums: type[StrEnum]) -> list[str]:
    return sorted({member.value for enum in enums for member in enum})


def add_error_codes(result: dict, generator, request, public) -> dict:
    schemas = result.setdefault("components", {}).setdefault("schemas", {})
    schemas["Error"] = {
        "type": "object",
        "description": 'Every 4xx and 5xx answer: `{"error": {...}}`.',
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["type", "code", "message"],
                "properties": {
                    "type": {"type": "string"},
                    "code": {
                        "type": "string",
                        "enum": _values(*API_ERROR_CODES.values()),
                    },
                    "message": {"type": "string"},
                    "param": {"type": "string", "nullable": True},
                },
            }
        },
    }
    refused = {
        "description": "Refused: the error object names the reason.",
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}
        },
    }
    for operations in result.get("paths", {}).values():
        for operation in operations.values():
            if isinstance(operation, dict) and "responses" in operation:
                operation["responses"].setdefault("4XX", refused)
    payment = schemas.get("Payment", {}).get("properties", {})
    if "failure_code" in payment:
        payment["failure_code"]["description"] = (
            "Why the payment failed or was declined: one of "
            + ", ".join(f"`{code}`" for code in _values(*FAILURE_CODES))
            + ", or a processor's own decline code."
        )
    refund = schemas.get("Refund", {}).get("properties", {})
    if "failure_code" in refund:
        refund["failure_code"]["description"] = (
            "Empty unless the refund failed; then one of "
            + ", ".join(f"`{code}`" for code in _values(*REFUND_FAILURE_CODES))
            + "."
        )
    return result
