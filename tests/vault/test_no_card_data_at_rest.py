"""End to end: card numbers go in through the API and never come out anywhere."""

import logging
import os
import subprocess

import pytest
from django.db import connection

from tests.vault.conftest import console_to_current_stderr
from vault.crypto import unseal
from vault.models import Token
from vault.services import detokenize_many, token_context

# DESIGN's test cards, an Amex and a Mastercard 2-series.
CARDS = {
    "4242424242424242": "123",
    "4000000000000002": "123",
    "4000000000009995": "123",
    "4000000000000119": "123",
    "378282246310005": "7391",
    "2223003122003222": "123",
}
logger = logging.getLogger("tests.vault.e2e")


def forms(pan: str) -> list[str]:
    """Plain, spaced and dashed, in 4-4-4-4 and (Amex) 4-6-5 groupings."""
    fours = [pan[i : i + 4] for i in range(0, len(pan), 4)]
    amex = [pan[:4], pan[4:10], pan[10:]]
    out = {pan, pan.encode().hex()}
    for groups in (fours, amex):
        out |= {" ".join(groups), "-".join(groups)}
    return sorted(out)


def pg_dump() -> str:
    db = connection.settings_dict
    env = {**os.environ, "PGPASSWORD": db.get("PASSWORD") or ""}
    command = ["pg_dump", "-h", db.get("HOST") or "127.0.0.1"]
    command += ["-p", str(db.get("PORT") or 5432), "-U", db.get("USER") or "postgres"]
    result = subprocess.run(
        [*command, db["NAME"]], capture_output=True, text=True, env=env, check=True
    )
    return result.stdout


@pytest.mark.django_db(transaction=True)
def test_card_numbers_and_cvcs_never_reach_the_database_or_the_logs(
    api, merchant, use_ring, caplog, capsys
):
    with console_to_current_stderr():
        exercise_cards_through_the_api(api, merchant, use_ring, caplog)
    output = "".join(capsys.readouterr())
    assert Token.objects.count() == len(CARDS)  # the 400s wrote nothing
    dump = pg_dump()
    assert all(
        token_id in dump for token_id in Token.objects.values_list("pk", flat=True)
    )
    logs = caplog.text + "\n".join(r.getMessage() for r in caplog.records)
    assert "charge failed for [REDACTED PAN]" in output
    for number in CARDS:
        for form in forms(number):
            assert form not in dump, f"card number ({form!r}) in pg_dump"
            assert form not in logs, f"card number ({form!r}) in caplog"
            assert form not in output, f"card number ({form!r}) on the console"
    assert "cvc" not in dump  # no column, no stored request body with a cvc key


def exercise_cards_through_the_api(api, merchant, use_ring, caplog) -> None:
    use_ring("k1")
    caplog.set_level(logging.DEBUG)
    token_ids = {}
    for n, (number, cvc) in enumerate(CARDS.items()):
        response = api.post(
            "/v1/tokens",
            {"number": number, "exp_month": 12, "exp_year": 2030, "cvc": cvc},
            format="json",
        )
        assert response.status_code == 201, response.content
        assert number not in response.content.decode()
        token_ids[number] = response.json()["id"]
        response = api.post(
            "/v1/payments",
            {"amount": 1000, "currency": "usd", "source": token_ids[number]},
            format="json",
            HTTP_IDEMPOTENCY_KEY=f"e2e-{n}",
        )
        assert response.status_code == 202, response.content

    # Error paths that log (django.request warns on every 4xx).
    for number in CARDS:
        spaced = " ".join(number[i : i + 4] for i in range(0, len(number), 4))
        response = api.post(
            "/v1/tokens",
            {"number": spaced, "exp_month": 1, "exp_year": 2020, "cvc": "123"},
            format="json",
        )
        assert response.status_code == 400
        assert number[:8] not in response.content.decode()
        response = api.post(
            "/v1/payments",
            {"amount": "ten", "currency": "usd", "source": token_ids[number],
             "metadata": {"card": number}},
            format="json",
            HTTP_IDEMPOTENCY_KEY=f"bad-{token_ids[number]}",
        )  # fmt: skip
        assert response.status_code == 400

    # Run the payments through the real stages (sandbox gateway): the execute
    # stage detokenizes and charges, settle posts to the ledger.
    from payments.models import Payment
    from payments.services import pipeline
    from payments.services.enrich import enrich_batch

    ids = list(Payment.objects.values_list("pk", flat=True))
    pipeline.validate_batch(ids)
    enrich_batch(ids)
    pipeline.execute_batch(ids)
    pipeline.settle_batch(ids)
    assert Payment.objects.filter(status="settled").count() == 3  # 4242, Amex, MC
    assert Payment.objects.filter(status="declined").count() == 2
    assert Payment.objects.filter(status="failed").count() == 1  # processing_error

    # The execute stage's read, and a careless log line in a charge path.
    cards = detokenize_many(token_ids.values())
    for card in cards.values():
        logger.info("charging %s (%r)", card.pan, card)
        try:
            raise RuntimeError(f"gateway choked on {card.pan} cvc? none")
        except RuntimeError:
            logger.exception("charge failed for %s", card.pan)

    # The numbers really are in the vault, sealed, and nothing else is sealed.
    for number, token_id in token_ids.items():
        token = Token.objects.get(pk=token_id)
        plain = unseal(token.ciphertext, context=token_context(token_id, merchant.id))
        assert plain == number.encode()
