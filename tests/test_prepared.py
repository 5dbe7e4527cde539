"""Prepared queries (slipway/prepared.py) give what their querysets give, in as many queries, with the SQL
compiled once."""

import pytest
from django.contrib.auth.models import Group, Permission, User
from django.contrib.contenttypes.models import ContentType
from django.core.paginator import Paginator
from django.db import connection
from django.db.models import QuerySet
from django.test.utils import CaptureQueriesContext

from slipway.prepared import Prepared, prefetched

pytestmark = pytest.mark.django_db


def members(group_name: str, first_letter: str = "") -> QuerySet[User]:
    return User.objects.filter(groups__name=group_name, username__startswith=first_letter).order_by("username")


@Prepared
def members_of(group_name: str) -> QuerySet[User]:
    return members(group_name)


@Prepared
def names_in(group_id: int) -> QuerySet[User, str]:
    return User.objects.filter(groups=group_id).order_by("-username").values_list("username", flat=True)


@Prepared
def with_groups(user_id: int) -> QuerySet[User]:
    return User.objects.filter(pk=user_id).prefetch_related("groups")


@pytest.fixture
def people() -> dict[str, Group]:
    groups = {name: Group.objects.get_or_create(name=name)[0] for name in ("approver", "viewer")}
    for name, group in (("ann", "approver"), ("bob", "approver"), ("cy", "viewer"), ("al", "approver")):
        User.objects.create(username=name).groups.add(groups[group])
    return groups


def test_rows_are_those_of_the_queryset_for_each_value(people):
    for group in ("approver", "viewer", "nobody"):
        assert members_of.list(group) == list(members(group))
    assert names_in.list(people["approver"].pk) == ["bob", "ann", "al"]
    assert names_in.count(people["viewer"].pk) == 1


def test_the_sql_is_compiled_once_and_run_with_the_new_values(people, monkeypatch):
    members_of.list("viewer")
    compiled = []
    monkeypatch.setattr(Prepared, "_compile", lambda *args: compiled.append(args))
    with CaptureQueriesContext(connection) as queries:
        assert [u.username for u in members_of.list("approver")] == ["al", "ann", "bob"]
    assert compiled == []
    assert len(queries) == 1 and "'approver'" in queries[0]["sql"]


def test_slices_and_counts_are_a_query_each_as_a_paginator_reads_them(people):
    with CaptureQueriesContext(connection) as queries:
        page = Paginator(members_of.rows("approver"), 2).get_page(2)
    assert ([u.username for u in page], page.paginator.count, page.has_next()) == (["bob"], 3, False)
    assert len(queries) == 2
    assert members_of.list("approver", low=1, high=2)[0].username == "ann"


def test_prefetches_are_made_as_from_the_queryset(people):
    ann = User.objects.get(username="ann")
    with CaptureQueriesContext(connection) as queries:
        found = with_groups.get(ann.pk)
        assert [g.name for g in found.groups.all()] == ["approver"]
    assert len(queries) == 2
    with pytest.raises(User.DoesNotExist):
        with_groups.get(ann.pk + 1000)


def test_values_of_the_wrong_kind_are_refused(people):
    with pytest.raises(TypeError, match=r"members_of takes \(str\), not \(int\)"):
        members_of.list(3)
    with pytest.raises(TypeError, match=r"takes \(int\), not \(\)"):
        names_in.list()


def test_an_int_may_be_a_slice_bound_written_into_the_sql(people):
    def after(offset: int) -> QuerySet[User]:
        return User.objects.order_by("username")[offset:offset + 2]

    page = Prepared(after)
    assert [u.username for u in page.list(1)] == ["ann", "bob"]
    assert [u.username for u in page.list(3)] == ["cy"]
    with pytest.raises(ValueError, match="a slice bound"):
        page.list(-1)


def test_a_paginator_may_read_its_pages_by_another_query(people):
    def approvers_from(group_name: str, offset: int) -> QuerySet[User]:
        return members(group_name)[offset:offset + 2]

    page = Paginator(members_of.rows("approver", pages=Prepared(approvers_from)), 2).get_page(2)
    assert ([u.username for u in page], page.paginator.count) == (["bob"], 3)


def test_an_argument_a_lookup_rewrites_or_the_sql_holds_is_refused_when_compiled(people):
    def starting(letter: str) -> QuerySet[User]:
        return members("approver", letter)  # startswith writes "letter%"

    def all_but_first(n: int) -> QuerySet[User]:
        return User.objects.all()[:n][1:]  # LIMIT n - 1

    def page_of_n(n: int) -> QuerySet[User]:
        return User.objects.all()[n:2 * n + 1]  # OFFSET n, LIMIT n + 1

    def untyped(name):  # no annotation: refused
        return User.objects.filter(username=name)

    with pytest.raises(ValueError, match="does not reach the SQL unchanged"):
        Prepared(starting).list("a")
    with pytest.raises(ValueError, match="does not reach the SQL unchanged"):
        Prepared(all_but_first).list(2)
    with pytest.raises(ValueError, match="a number computed from an int argument"):
        Prepared(page_of_n).list(2)
    with pytest.raises(TypeError, match="annotated int or str"):
        Prepared(untyped)


@Prepared
def permissions_of(content_type_id: int) -> QuerySet[Permission]:
    return Permission.objects.filter(content_type=content_type_id)


def test_rows_given_as_prefetched_are_read_without_a_query_and_know_their_parent():
    users = ContentType.objects.get_for_model(User)
    rows = permissions_of.list(users.pk)
    assert rows == list(Permission.objects.filter(content_type=users)) and len(rows) == 4
    prefetched(users, "permission_set", rows)
    with CaptureQueriesContext(connection) as queries:
        assert list(users.permission_set.all()) == rows
        assert {p.content_type for p in rows} == {users}
    assert len(queries) == 0
