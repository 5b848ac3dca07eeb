"""``field__any_of=ids``: one parameter for a whole batch of ids.

``pk__in=ids`` sends one placeholder per id. With 500 ids the statement is too
long for psycopg's cache of converted queries (50 parameters at most), so each
call re-splits the SQL text and quotes every id on the client, and PostgreSQL
parses 500 literals: the pipeline's three batch reads spent 6% of the worker's
CPU there. ``any_of`` sends the values as one text[] literal,
``= ANY(%s::text[])``, which the primary key index serves like ``IN``
(checked with EXPLAIN). Every value is quoted in the literal (84 us for
500), so any text matches exactly: commas, quotes, braces, ``NULL``, the
empty string. A read of 500 ids, interleaved runs: 7.0-9.6 ms of client CPU
with ``pk__in``, 5.6-6.8 with ``any_of``.
"""

from django.db.models import CharField, Lookup


def text_array_literal(values: list[str]) -> str:
    """PostgreSQL's text[] input syntax for ``values``, each quoted."""
    return (
        "{"
        + ",".join(
            '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"' for v in values
        )
        + "}"
    )


@CharField.register_lookup
class AnyOf(Lookup):
    lookup_name = "any_of"
    prepare_rhs = False

    def get_prep_lookup(self):
        return [str(v) for v in self.rhs]

    def as_sql(self, compiler, connection):
        lhs, lhs_params = self.process_lhs(compiler, connection)
        return f"{lhs} = ANY(%s::text[])", [
            *lhs_params,
            text_array_literal(self.rhs),
        ]
