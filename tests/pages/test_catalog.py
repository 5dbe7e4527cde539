"""The models list and a model's page: policy, trend figures across versions, paginated versions."""

import json

import pytest

from tests.browser import client_for
from tests.pages import data as d
from tests.pages import scenes

pytestmark = pytest.mark.django_db


def test_pages_ask_for_a_login(client):
    assert client.get("/models/")["Location"] == "/login/?next=/models/"
    assert client.get("/models/digits/")["Location"] == "/login/?next=/models/digits/"


def test_the_models_list_counts_versions_and_pages_through_models(users):
    scenes.build(users)
    for i in range(50):
        d.make_model(f"m{i:02}", task="regression")
    client = client_for(users["victor"])
    first = client.get("/models/")
    assert [(m.name, m.version_count) for m in first.context["page"]][:2] == [("digits", 6), ("m00", 0)]
    assert len(first.context["page"]) == 50
    assert 'href="?page=2" rel="next"' in first.content.decode()
    assert [m.name for m in client.get("/models/?page=2").context["page"]] == ["m49"]


def test_an_empty_models_list_says_where_models_come_from(users):
    assert "No models yet: the first build CI posts creates one." in client_for(users["victor"]).get(
        "/models/").content.decode()


def test_a_model_page_charts_the_shipped_figures_of_each_version(users):
    scene = scenes.build(users)
    response = client_for(users["victor"]).get("/models/digits/")
    trend = response.context["trend"]
    assert trend == {
        "labels": ["1.0.0", "1.1.0", "1.2.0", "1.3.0", "1.4.0", "1.5.0"],
        "metric": "accuracy", "higher_is_better": True,
        "task": [*scenes.ACCURACY, 0.958],  # the last version ships its chosen candidate, int8-dynamic
        "p95": [*scenes.P95_MS, 2.9],
        "size_mb": [2.0, 1.9, 1.8, 1.7, 1.6, 0.4],
    }
    body = response.content.decode()
    start = body.index('<script id="trend-data" type="application/json">') + 48
    assert json.loads(body[start:body.index("</script>", start)]) == trend
    assert [v.label for v in response.context["page"]] == ["1.5.0", "1.4.0", "1.3.0", "1.2.0", "1.1.0", "1.0.0"]
    assert [r.pk for r in response.context["page"][0].releases.all()] == [scene.at_gate.pk]


def test_a_regression_model_charts_rmse_and_a_version_without_figures_leaves_a_gap(users):
    model = d.make_model("house-prices", task="regression", max_rmse=0.5)
    d.make_release(d.make_version(model, "1", users["ci"]), "released", d.STAGES_DONE,
                   {"rmse": 0.41, "latency_p95_ms": 1.5, "size_bytes": 5e5})
    d.make_release(d.make_version(model, "2", users["ci"]), "failed", [("validate", "failed")])
    trend = client_for(users["victor"]).get("/models/house-prices/").context["trend"]
    assert (trend["metric"], trend["higher_is_better"]) == ("rmse", False)
    assert (trend["task"], trend["p95"], trend["size_mb"]) == ([0.41, None], [1.5, None], [0.5, None])


def test_versions_are_paginated(users):
    model = d.make_model("digits")
    for i in range(26):
        d.make_version(model, f"v{i}", users["ci"])
    client = client_for(users["victor"])
    assert len(client.get("/models/digits/").context["page"]) == 25
    assert [v.label for v in client.get("/models/digits/?page=2").context["page"]] == ["v0"]


def test_an_unknown_model_is_not_found(users):
    assert client_for(users["victor"]).get("/models/nope/").status_code == 404


@pytest.mark.parametrize("versions", [1, 40])
def test_model_pages_take_the_same_queries_however_many_versions(users, versions, django_assert_num_queries):
    model = d.make_model("digits")
    for i in range(versions):
        d.make_release(d.make_version(model, f"v{i}", users["ci"]), "released", d.STAGES_DONE,
                       {"accuracy": 0.9, "latency_p95_ms": 2.0, "size_bytes": 1e6})
    client = client_for(users["victor"])
    # user and the user's groups (viewer_required; the session comes from the cache), then the page
    with django_assert_num_queries(4):
        listing = client.get("/models/")
    assert [m.name for m in listing.context["page"]] == ["digits"]
    assert 'href="/models/digits/"' in listing.content.decode()
    with django_assert_num_queries(9):  # and where it serves (one query for every environment)
        detail = client.get("/models/digits/")
    shown = [v.label for v in detail.context["page"]]
    assert shown == [f"v{i}" for i in reversed(range(versions))][:25]  # newest first, 25 a page
    body = detail.content.decode()
    assert all(label in body for label in shown)
