"""The one definition of an object id in a URL: ``<id:payment_id>``.

Surge's ids are a prefix and Crockford base32 (``core.ids``): letters, digits
and underscores. A path segment with anything else is no id of ours, so it
matches no route and gets the API's 404 (``core.api.not_found``) before any
view or query runs. That keeps out what PostgreSQL cannot even compare (a
URL's ``%00`` is a NUL, which ``text`` cannot hold: the query used to fail
with a 500) for every route at once, not one selector at a time.
"""

from django.urls import register_converter

from core.ids import PATH_PATTERN


class ObjectIdConverter:
    regex = PATH_PATTERN

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value


def register() -> None:
    register_converter(ObjectIdConverter, "id")
