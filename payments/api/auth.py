from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions

from core import logs
from payments.services.keys import api_key_authenticate


class MerchantUser:
    """What ``request.user`` is for API calls: the authenticated merchant."""

    is_authenticated = True
    is_anonymous = False

    def __init__(self, merchant):
        self.merchant = merchant

    def __str__(self):
        return self.merchant.id


class ApiKeyAuthentication(authentication.BaseAuthentication):
    keyword = b"bearer"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).split()
        if not header or header[0].lower() != self.keyword:
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed("Malformed Authorization header.")
        try:
            secret = header[1].decode("ascii")
        except UnicodeDecodeError:
            raise exceptions.AuthenticationFailed("Invalid API key.") from None
        merchant = api_key_authenticate(secret)
        if merchant is None:
            raise exceptions.AuthenticationFailed("Invalid API key provided.")
        logs.bind(merchant_id=merchant.id)
        # ``request.auth`` is the key's public prefix: what its rate limit keys on.
        return MerchantUser(merchant), secret.split("_", 2)[1]

    def authenticate_header(self, request):
        return 'Bearer realm="surge"'


class ApiKeyScheme(OpenApiAuthenticationExtension):
    target_class = "payments.api.auth.ApiKeyAuthentication"
    name = "bearerAuth"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer"}
