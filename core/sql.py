"""Raw SQL on Django's own PostgreSQL connection, with server-side binding.

Django's psycopg backend binds parameters on the client: every value is
quoted into the SQL text in Python. For the hot paths' array parameters
(``unnest`` of a batch, ``= ANY`` of its ids) that quoting is most of the
statement's CPU: 500 event rows cost ~6.7 ms to send that way and ~0.4 ms as
binary arrays (``%b``), measured with the bench's own shapes. ``pg_cursor``
runs statements on the same connection and in the same transaction as the
ORM, with psycopg's server-side binding, so ``%b`` sends a list as a binary
array.
"""

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from django.db import connection


@contextmanager
def pg_cursor() -> Iterator[psycopg.Cursor]:
    """A server-side binding cursor on Django's connection (PostgreSQL only).

    Errors surface as Django's database exceptions, as from ``connection.cursor()``.
    """
    connection.ensure_connection()
    connection.validate_no_broken_transaction()
    with connection.wrap_database_errors:
        with psycopg.Cursor(connection.connection) as cursor:
            yield cursor
