from vault.models import Token


def token_get_for_merchant(*, token_id: str, merchant_id: str) -> Token | None:
    """The merchant's own token, or None: another merchant's token does not exist."""
    if not isinstance(token_id, str) or not token_id.startswith("tok_"):
        return None
    return Token.objects.filter(pk=token_id, merchant_id=merchant_id).first()
