"""Tokenize cards, hand them back to the execute stage, rotate keys.

``detokenize``/``detokenize_many`` are for the payment execute stage only (the
one place a PAN goes to a gateway). The CVC is validated and dropped.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date

from django.apps import apps
from django.db import models, transaction
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from vault import cards
from vault.crypto import Keyring, card_fingerprint, get_keyring, key_id_of, seal, unseal
from vault.exceptions import TokenNotFound, VaultIntegrityError
from vault.fields import EncryptedTextField, Sealed, encrypted_fields
from vault.models import Token, tok_id

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, repr=False)
class Card:
    """A card in the clear, for one gateway call. Its repr and str show last4 only.

    It refuses to be pickled, so it cannot end up in a broker message or cache:
    pass token ids and detokenize where the gateway is called.
    """

    pan: str
    exp_month: int
    exp_year: int
    brand: str
    last4: str

    def __repr__(self) -> str:
        return (
            f"Card(brand={self.brand!r}, last4={self.last4!r}, "
            f"exp={self.exp_month:02d}/{self.exp_year})"
        )

    __str__ = __repr__

    def __reduce_ex__(self, protocol):
        raise TypeError("A Card holds a PAN and must not be serialized.")


def token_context(token_id: str, merchant_id: str) -> str:
    """Associated data that binds a token's ciphertext to its row and merchant."""
    return f"vault.token|{token_id}|{merchant_id}"


@sensitive_variables("number", "cvc", "pan")
def token_create(
    *,
    merchant_id: str,
    number: str,
    exp_month: int,
    exp_year: int,
    cvc: str,
    today: date | None = None,
) -> Token:
    """Validate a card and store it sealed; raise a ``CardInvalid`` naming the field.

    Nothing is written unless every check passes.
    """
    today = today or timezone.now().date()
    pan, brand = cards.check_number(number)
    exp_month, exp_year = cards.check_expiry(
        exp_month=exp_month, exp_year=exp_year, today=today
    )
    cards.check_cvc(cvc, brand=brand)
    del cvc, number
    ring = get_keyring()
    token_id = tok_id()
    return Token.objects.create(
        id=token_id,
        merchant_id=merchant_id,
        brand=brand,
        last4=pan[-4:],
        bin=pan[:6],
        exp_month=exp_month,
        exp_year=exp_year,
        fingerprint=card_fingerprint(pan, merchant_id=merchant_id),
        key_id=ring.active_id,
        ciphertext=seal(
            pan.encode("ascii"),
            context=token_context(token_id, merchant_id),
            keyring=ring,
        ),
    )


def token_is_expired(token: Token | Card, *, today: date | None = None) -> bool:
    """Expired after the last day of the expiry month, UTC."""
    today = today or timezone.now().date()
    return cards.is_expired(
        exp_month=token.exp_month, exp_year=token.exp_year, today=today
    )


_CARD_COLUMNS = (
    "id",
    "merchant_id",
    "brand",
    "last4",
    "exp_month",
    "exp_year",
    "ciphertext",
)


@sensitive_variables("pan")
def _open_card(row: tuple, ring: Keyring) -> Card:
    token_id, merchant_id, brand, last4, exp_month, exp_year, blob = row
    pan = unseal(
        blob, context=token_context(token_id, merchant_id), keyring=ring
    ).decode("ascii")
    if pan[-4:] != last4:
        raise VaultIntegrityError(f"Token {token_id} does not match its last4.")
    return Card(
        pan=pan, exp_month=exp_month, exp_year=exp_year, brand=brand, last4=last4
    )


def detokenize(*, token_id: str) -> Card:
    """The card behind one token. For the execute stage only."""
    return detokenize_many([token_id])[token_id]


def detokenize_many(token_ids: Iterable[str]) -> dict[str, Card]:
    """Cards by token id, in one query. For the execute stage only.

    Raises TokenNotFound if any id is missing and VaultIntegrityError if any
    ciphertext does not open: a batch never proceeds with a card silently absent.
    """
    wanted = set(token_ids)
    if not wanted:
        return {}
    ring = get_keyring()
    rows = Token.objects.filter(pk__in=wanted).values_list(*_CARD_COLUMNS)
    found = {row[0]: _open_card(row, ring) for row in rows}
    missing = wanted - found.keys()
    if missing:
        raise TokenNotFound(f"No such token: {', '.join(sorted(missing))}.")
    logger.debug("vault: detokenized %d tokens", len(found))
    return found


# --- key rotation -------------------------------------------------------------


@dataclass(slots=True)
class RotationStep:
    """One batch of a rotation: rows looked at, re-sealed, lost races, failures."""

    label: str
    scanned: int = 0
    resealed: int = 0
    skipped: int = 0
    failed: list[str] = field(default_factory=list)


def encrypted_field_models() -> list[
    tuple[type[models.Model], list[EncryptedTextField]]
]:
    """Every installed model with an ``EncryptedTextField`` column."""
    found = []
    for model in apps.get_models():
        fields = encrypted_fields(model)
        if fields and not model._meta.proxy:
            found.append((model, fields))
    return found


def tokens_to_rotate(*, keyring: Keyring | None = None) -> int:
    ring = keyring or get_keyring()
    return Token.objects.exclude(key_id=ring.active_id).count()


def _rotate_tokens(
    *, batch_size: int, dry_run: bool, ring: Keyring
) -> Iterator[RotationStep]:
    after = ""
    while True:
        rows = list(
            Token.objects.exclude(key_id=ring.active_id)
            .filter(pk__gt=after)
            .order_by("pk")
            .values_list("id", "merchant_id", "key_id", "ciphertext")[:batch_size]
        )
        if not rows:
            return
        after = rows[-1][0]
        step = RotationStep("vault.Token", scanned=len(rows))
        updates = []
        for token_id, merchant_id, old_key_id, blob in rows:
            context = token_context(token_id, merchant_id)
            try:
                new = seal(
                    unseal(blob, context=context, keyring=ring),
                    context=context,
                    keyring=ring,
                )
            except VaultIntegrityError:
                step.failed.append(token_id)
                continue
            updates.append((token_id, old_key_id, new))
        if dry_run:
            step.resealed = len(updates)
        else:
            with transaction.atomic():
                for token_id, old_key_id, new in updates:
                    # Conditional: a row changed since we read it is left alone.
                    done = Token.objects.filter(pk=token_id, key_id=old_key_id).update(
                        key_id=ring.active_id, ciphertext=new
                    )
                    step.resealed += done
                    step.skipped += 1 - done
        yield step


def _rotate_field_model(
    model: type[models.Model],
    fields: list[EncryptedTextField],
    *,
    batch_size: int,
    dry_run: bool,
    ring: Keyring,
) -> Iterator[RotationStep]:
    """Scan the table by pk (the key id is inside the value, not a column)."""
    manager = model._base_manager
    attnames = [f.attname for f in fields]
    after = None
    while True:
        query = manager.order_by("pk")
        if after is not None:
            query = query.filter(pk__gt=after)
        rows = list(query.values_list("pk", *attnames)[:batch_size])
        if not rows:
            return
        after = rows[-1][0]
        step = RotationStep(model._meta.label, scanned=len(rows))
        updates = []
        for pk, *blobs in rows:
            for f, blob in zip(fields, blobs, strict=True):
                if blob is None:
                    continue
                context = f.context_for(pk)
                try:
                    if key_id_of(blob) == ring.active_id:
                        continue
                    new = seal(
                        unseal(blob, context=context, keyring=ring),
                        context=context,
                        keyring=ring,
                    )
                except VaultIntegrityError:
                    step.failed.append(f"{model._meta.label}.{f.name}:{pk}")
                    continue
                updates.append((pk, f.attname, blob, Sealed(new)))
        if dry_run:
            step.resealed = len(updates)
        else:
            with transaction.atomic():
                for pk, attname, old, new in updates:
                    done = manager.filter(pk=pk, **{attname: old}).update(
                        **{attname: new}
                    )
                    step.resealed += done
                    step.skipped += 1 - done
        yield step


def rotate_keys(
    *,
    batch_size: int = 500,
    dry_run: bool = False,
    models_with_fields: list | None = None,
    keyring: Keyring | None = None,
) -> Iterator[RotationStep]:
    """Re-seal every token and encrypted field not under the active key.

    Batches commit one by one, so the rotation is resumable (re-run it) and
    safe while payments run: readers see the old or the new row, and both open
    while the old key is still in the ring. Deploy the new ring ("new,old") to
    every process first; remove the old key only after a clean run.
    """
    ring = keyring or get_keyring()
    yield from _rotate_tokens(batch_size=batch_size, dry_run=dry_run, ring=ring)
    if models_with_fields is None:
        models_with_fields = encrypted_field_models()
    for model, fields in models_with_fields:
        yield from _rotate_field_model(
            model, fields, batch_size=batch_size, dry_run=dry_run, ring=ring
        )
