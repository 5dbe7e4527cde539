"""Querysets compiled to SQL once and run again with new values, for the queries every page asks.

Building a queryset and compiling it to SQL is pure Python that Django does again on every request:
0.5-1 ms a query here, most of a light page's time, for SQL that is the same each time but for the
values compared. A prepared query is built once, with a stand-in for each argument, and compiled once
per database connection; each run puts the values where their stand-ins were in the parameters and
runs the SQL through Django's own iterables, so rows, select_related objects, values_list tuples and
prefetch_related lookups come out as they would from the queryset itself.

    @Prepared
    def group_names(user_id: int) -> QuerySet:
        return Group.objects.filter(user=user_id).values_list("name", flat=True)

    group_names.list(user.pk)     # ["approver"]
    group_names.count(user.pk)    # 1

Arguments are int or str (their annotation says which): those reach the database as they are on every
backend. Compiling checks that each stand-in came out unchanged, as a parameter of its own or, for an
int, as a number in the SQL text (a slice's start or length: OFFSET and LIMIT); a lookup that rewrites
a value (`contains`, `__in`), a str in the SQL text or a number computed from an int (a slice of a
slice) is refused then, not answered wrongly later. A query whose shape depends on its arguments (the
length of a list, a branch) is not a prepared query: build it as usual.
"""

import copy
import inspect
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, get_type_hints, overload

from django.core.exceptions import EmptyResultSet
from django.db import connections, router
from django.db.models import Model, QuerySet
from django.db.models.sql.compiler import SQLCompiler

T = TypeVar("T")
KINDS = (int, str)
FIRST_STAND_IN = 2_147_483_001  # ints near the top of a 32-bit id, which Django checks them against


@dataclass(frozen=True)
class Compiled:
    queryset: QuerySet  # as built with the stand-ins; evaluated only through a clone
    compiler: SQLCompiler  # set up by compiling (its select, klass_info, columns for the converters)
    sql: str
    params: tuple
    slots: tuple[tuple[int, int], ...]  # (index in params, index of the argument)
    in_text: tuple[tuple[str, int], ...]  # (the stand-in's digits in the SQL text, index of the argument)


class Prepared(Generic[T]):
    """A queryset-building function whose SQL is compiled once; see the module's docstring."""

    def __init__(self, build: Callable[..., "QuerySet[Any, T]"]) -> None:
        self.build = build
        hints = get_type_hints(build)
        kinds = [hints.get(name) for name in inspect.signature(build).parameters]
        if not all(kind in KINDS for kind in kinds):
            raise TypeError(f"{build.__qualname__}: every argument must be annotated int or str")
        self.kinds: tuple[type, ...] = tuple(kind for kind in kinds if kind is not None)
        self.stand_ins = tuple(stand_in(kind, i) for i, kind in enumerate(self.kinds))
        self._model: Any = None  # the queryset's model, known once it is first built (after apps load)
        self._compiled: dict[tuple[str, bool], Compiled] = {}  # (database alias, counting) → compiled
        self._lock = threading.Lock()

    def list(self, *values: object, low: int = 0, high: int | None = None) -> list[T]:
        """The rows the queryset built with these values would give; rows [low:high] of them when given
        (the build must not slice then)."""
        compiled = self._compiled_for(values, counting=False)
        queryset = compiled.queryset._chain()  # type: ignore[attr-defined]
        compiler = copy.copy(compiled.compiler)
        compiler.connection = connection = connections[queryset.db]
        params = fill(compiled.params, compiled.slots, values)
        sql = written(compiled, values)
        if low or high is not None:
            if queryset.query.is_sliced:
                raise ValueError(f"{self.build.__qualname__} slices its rows already")
            sql = f"{sql} {connection.ops.limit_offset_sql(int(low), None if high is None else int(high))}"
        compiler.as_sql = lambda *args, **kwargs: (sql, params)  # type: ignore[method-assign]
        queryset.query.get_compiler = lambda *args, **kwargs: compiler
        return list(queryset)

    def count(self, *values: object) -> int:
        """How many rows the queryset built with these values would give."""
        compiled = self._compiled_for(values, counting=True)
        with connections[compiled.queryset.db].cursor() as cursor:
            cursor.execute(written(compiled, values), fill(compiled.params, compiled.slots, values))
            return cursor.fetchone()[0]

    def rows(self, *values: object, pages: "Prepared[T] | None" = None) -> "Rows[T]":
        """The rows for these values as a Paginator takes them: counted, then sliced, in one query each.
        With `pages` (a query for a page of the same rows, its last argument the page's offset, its length
        the paginator's page or more), a page is read by it instead of by slicing these."""
        return Rows(self, values, pages)

    def get(self, *values: object) -> T:
        """The one row, or the model's DoesNotExist / MultipleObjectsReturned as QuerySet.get raises them."""
        rows = self.list(*values)
        if len(rows) == 1:
            return rows[0]
        model = self._model
        if not rows:
            raise model.DoesNotExist(f"{model._meta.object_name} matching {values} does not exist.")
        raise model.MultipleObjectsReturned(f"{len(rows)} {model._meta.object_name} rows match {values}.")

    def _compiled_for(self, values: tuple, counting: bool) -> Compiled:
        if len(values) != len(self.kinds) or not all(type(v) is k for v, k in zip(values, self.kinds, strict=False)):
            raise TypeError(f"{self.build.__qualname__} takes ({', '.join(k.__name__ for k in self.kinds)}), "
                            f"not ({', '.join(type(v).__name__ for v in values)})")
        if self._model is None:
            self._model = self.build(*self.stand_ins).model
        key = (router.db_for_read(self._model), counting)
        compiled = self._compiled.get(key)
        if compiled is None:
            with self._lock:
                compiled = self._compiled.get(key) or self._compile(*key)
                self._compiled[key] = compiled
        return compiled

    def _compile(self, alias: str, counting: bool) -> Compiled:
        compiled = self._compile_with(alias, counting, self.stand_ins)
        if compiled.in_text:  # numbers computed from a stand-in would differ with others: compile with others
            others = tuple(stand_in(kind, i, other=True) for i, kind in enumerate(self.kinds))
            again = self._compile_with(alias, counting, others)
            if written(compiled, self.stand_ins) != written(again, self.stand_ins):
                raise ValueError(f"{self.build.__qualname__}: the SQL text holds a number computed from an "
                                 "int argument (a slice of a slice?), not the argument itself")
        return compiled

    def _compile_with(self, alias: str, counting: bool, stand_ins: tuple) -> Compiled:
        queryset = self.build(*stand_ins).using(alias)
        compiler = ((queryset.order_by().values_list("pk") if counting else queryset)
                    .query.get_compiler(connection=connections[alias]))
        try:
            sql, params = compiler.as_sql()
        except EmptyResultSet as empty:  # Django answers an int out of its field's range so
            raise ValueError(f"{self.build.__qualname__}: an int argument must be a 32-bit id") from empty
        slots, in_text = slots_of(self.build.__qualname__, sql, params, stand_ins)
        if counting:  # as Django counts a sliced or distinct queryset
            sql = f"SELECT COUNT(*) FROM ({sql}) prepared_count"  # noqa: S608 - Django's own SQL
        return Compiled(queryset, compiler, sql, tuple(params), slots, in_text)


@dataclass(frozen=True)
class Rows(Generic[T]):
    """A prepared query's rows for some values, as Django's Paginator reads them: counted, then sliced."""

    prepared: Prepared[T]
    values: tuple
    pages: Prepared[T] | None = None

    def count(self) -> int:
        return self.prepared.count(*self.values)

    def __len__(self) -> int:
        return self.count()

    def __iter__(self) -> Iterator[T]:
        return iter(self.prepared.list(*self.values))

    @overload
    def __getitem__(self, index: int) -> T: ...
    @overload
    def __getitem__(self, index: slice) -> list[T]: ...

    def __getitem__(self, index: int | slice) -> T | list[T]:
        if isinstance(index, int):
            return self[index:index + 1][0]
        if index.step is not None or (index.start or 0) < 0 or (index.stop or 0) < 0:
            raise TypeError("prepared rows are read by a slice forward, or one row")
        if self.pages is None:
            return self.prepared.list(*self.values, low=index.start or 0, high=index.stop)
        page = self.pages.list(*self.values, index.start or 0)
        return page if index.stop is None else page[:index.stop - (index.start or 0)]


def prefetched(instance: Model, name: str, rows: list) -> None:
    """Make `instance.<name>.all()` answer `rows` without a query, as prefetch_related("<name>") would have
    (rows read by a prepared query instead): for a reverse foreign key, such as a release's stages, each
    row knows `instance` as its parent too."""
    manager = getattr(instance, name)
    for row in rows:
        manager.field.set_cached_value(row, instance)
    queryset = manager.get_queryset()
    queryset._result_cache = rows
    queryset._prefetch_done = True  # as Django's prefetch_one_level leaves it
    instance.__dict__.setdefault("_prefetched_objects_cache", {})[manager.field.remote_field.cache_name] = queryset


def stand_in(kind: type, index: int, other: bool = False) -> int | str:
    return FIRST_STAND_IN + index + (500 if other else 0) if kind is int else f"\x1fprepared-{index}\x1f"


def slots_of(name: str, sql: str, params: list | tuple, stand_ins: tuple
             ) -> tuple[tuple[tuple[int, int], ...], tuple[tuple[str, int], ...]]:
    """Where each stand-in is among the compiled parameters, and which ints are in the SQL text; refuses a
    stand-in that is neither, or a str in the text."""
    slots = tuple((position, stand_ins.index(param)) for position, param in enumerate(params)
                  if type(param) in KINDS and param in stand_ins)
    in_text = tuple((str(value), index) for index, value in enumerate(stand_ins) if str(value) in sql)
    for index, value in enumerate(stand_ins):
        if type(value) is str and str(value) in sql:
            raise ValueError(f"{name}: argument {index} is written into the SQL text, not passed as a parameter")
        if not any(argument == index for _, argument in (*slots, *in_text)):
            raise ValueError(f"{name}: argument {index} does not reach the SQL unchanged (a lookup rewrites it)")
    return slots, in_text


def fill(params: tuple, slots: tuple[tuple[int, int], ...], values: tuple) -> tuple:
    filled = list(params)
    for position, argument in slots:
        filled[position] = values[argument]
    return tuple(filled)


def written(compiled: Compiled, values: tuple) -> str:
    """The SQL text with the int arguments it holds (a slice's OFFSET and LIMIT) written in."""
    sql = compiled.sql
    for digits, argument in compiled.in_text:
        value = values[argument]
        if type(value) is not int or value < 0:  # what Django's slicing refuses
            raise ValueError(f"argument {argument} is a slice bound: an int >= 0, not {value!r}")
        sql = sql.replace(digits, str(value))
    return sql
