"""Times as the charts want them, computed by the database: epoch milliseconds, so that a page
drawing hundreds of points builds no datetime objects for them."""

from django.db.models import BigIntegerField, F, Func


class EpochMs(Func):
    """A moment as whole milliseconds since the Unix epoch (UTC): rounded down on PostgreSQL; on SQLite,
    whose julianday() keeps milliseconds, to the nearest one."""

    output_field = BigIntegerField()

    def __init__(self, expression: str) -> None:
        super().__init__(F(expression))

    def as_postgresql(self, compiler, connection, **extra):  # noqa: ANN001, ANN201
        return self.as_sql(compiler, connection,
                           template="FLOOR(EXTRACT(EPOCH FROM %(expressions)s) * 1000)::bigint", **extra)

    def as_sqlite(self, compiler, connection, **extra):  # noqa: ANN001, ANN201
        return self.as_sql(compiler, connection, template=(
            "CAST(ROUND((julianday(%(expressions)s) - 2440587.5) * 86400000.0, 1) AS INTEGER)"), **extra)
