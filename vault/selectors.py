from collections.abc import Iterable
from dataclasses import dataclass

from django.db import connection

from vault.models import BinRange, Token


def token_get_for_merchant(*, token_id: str, merchant_id: str) -> Token | None:
    """The merchant's own token, or None: another merchant's token does not exist."""
    if not isinstance(token_id, str) or not token_id.startswith("tok_"):
        return None
    return Token.objects.filter(pk=token_id, merchant_id=merchant_id).first()


_owners: dict[str, str] = {}


def token_owner(token_id: object) -> str | None:
    """The merchant id owning ``token_id``, or None. Cached per process: a token
    never changes merchant and is never deleted (payments protect it)."""
    if not isinstance(token_id, str) or not token_id.startswith("tok_"):
        return None
    owner = _owners.get(token_id)
    if owner is None:
        owner = (
            Token.objects.filter(pk=token_id)
            .values_list("merchant_id", flat=True)
            .first()
        )
        if owner is not None:
            if len(_owners) > 200_000:
                _owners.clear()
            _owners[token_id] = owner
    return owner


def token_card_summary(token_id: str) -> tuple[str, str] | None:
    """(brand, last4) of a token, for people to read; nothing else of the card."""
    return Token.objects.filter(pk=token_id).values_list("brand", "last4").first()


@dataclass(frozen=True, slots=True)
class CardMetadata:
    """What the vault's BIN data says of a card; "" where it does not say."""

    brand: str
    funding: str
    country: str

    def as_dict(self) -> dict[str, str]:
        return {"brand": self.brand, "funding": self.funding, "country": self.country}


def bins_lookup(bins: Iterable[str]) -> dict[str, CardMetadata]:
    """BIN -> the metadata of the narrowest range holding it, for a batch of
    six-digit BINs, in one query; a BIN that no range holds is absent."""
    wanted = sorted({b for b in bins if len(b) == 6 and b.isdigit()})
    if not wanted:
        return {}
    table = BinRange._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT b.bin, r.brand, r.funding, r.country "  # noqa: S608 (model name)
            "FROM unnest(%s::int[]) AS b(bin) CROSS JOIN LATERAL ("
            f"SELECT brand, funding, country FROM {table} "
            "WHERE low <= b.bin AND high >= b.bin "
            "ORDER BY high - low, id DESC LIMIT 1) r",
            [[int(b) for b in wanted]],
        )
        return {
            f"{bin_:06d}": CardMetadata(brand, funding, country)
            for bin_, brand, funding, country in cursor.fetchall()
        }
