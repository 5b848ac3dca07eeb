"""Raw SQL on Django's own PostgreSQL connection, with server-side binding.

Django's psycopg backend binds parameters on the client: every value is
quoted into the SQL text in Python. For the hot paths' array parameters
(``unnest`` of a batch, ``= ANY`` of its ids) quoting every element in
Python costs more CPU than the statement itself; a binary array (``%b``)
needs no quoting. ``pg_cursor`` runs statements on the same connection and in
the same transaction as the ORM, with psycopg's server-side binding, so
``%b`` sends a list as a binary array.
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
