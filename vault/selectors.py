from vault.models import Token


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
