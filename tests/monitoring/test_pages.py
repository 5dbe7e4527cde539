"""The monitoring charts on the environment and release pages: exact figures, queries that do not
grow with the rows, and drawn by Chart.js in Chromium under the strict CSP."""

from datetime import timedelta

import pytest
from django.utils import timezone

from monitoring.models import Label, Prediction, WatchSample
from monitoring.queries import charts_of_environment
from releases.models import Environment
from releases.pages.queries import release_label
from tests.browser import client_for
from tests.pages import scenes

DRAWN = "id => document.getElementById(id) !== null && Chart.getChart(document.getElementById(id)) !== undefined"
NOW = (timezone.now() - timedelta(minutes=30)).replace(second=0, microsecond=0)  # minute windows: 4 labels each


def watched(scene: scenes.Scene, rows: int) -> None:
    """`rows` collections of the serving release (drift rising), and 4 labels per minute for `rows` minutes:
    all right in the first half, one in four right in the second."""
    production = Environment.objects.get(name="production")
    WatchSample.objects.bulk_create(
        WatchSample(environment=production, release=scene.serving, at=NOW + timedelta(seconds=15 * i), rows=100,
                    nan=i % 2, out_of_range=1, drift_psi=round(0.02 * i, 2)) for i in range(rows))
    predictions = Prediction.objects.bulk_create(
        Prediction(prediction_id=f"p{i}", environment=production, release=scene.serving,
                   at=NOW + timedelta(seconds=15 * i), value=3.0) for i in range(4 * rows))
    Label.objects.bulk_create(Label(prediction=p, value=3.0 if i < 2 * rows or i % 4 == 0 else 5.0)
                              for i, p in enumerate(predictions))


@pytest.mark.django_db
@pytest.mark.parametrize("rows", [1, 40])
def test_the_charts_take_the_same_queries_however_many_rows(users, rows, django_assert_num_queries):
    scene = scenes.build(users)
    watched(scene, rows)
    with django_assert_num_queries(7):
        charts = charts_of_environment(Environment.objects.get(name="production"))
    (watch,) = charts["watch"]["series"]
    assert watch["label"] == release_label(scene.serving) and len(watch["points"]) == rows
    assert watch["points"][-1][1:] == [((rows - 1) % 2 + 1) / 100, round(0.02 * (rows - 1), 2)]
    (quality,) = charts["quality"]["series"]
    assert sum(p[2] for p in quality["points"]) == 4 * rows
    right = sum(1 for i in range(4 * rows) if i < 2 * rows or i % 4 == 0)
    assert sum(round(p[1] * p[2]) for p in quality["points"]) == right


@pytest.mark.django_db
def test_the_environment_and_release_pages_show_the_figures(users):
    scene = scenes.build(users)
    watched(scene, 40)
    client = client_for(users["victor"])
    assert 'hx-get="/monitoring/environments/production/" hx-trigger="load"' in client.get(
        "/environments/production/").content.decode()  # the page loads the panel after it shows
    page = client.get("/monitoring/environments/production/").content.decode()
    assert 'data-source="monitoring-quality"' in page and 'data-source="monitoring-watch"' in page
    assert (f'<tr><th scope="row">{release_label(scene.serving)}</th><td>0.250</td><td>') in page
    assert "<td>0.780</td>" in page  # the newest drift point
    assert f'hx-get="/monitoring/releases/{scene.serving.pk}/"' in client.get(
        f"/releases/{scene.serving.pk}/").content.decode()
    release_page = client.get(f"/monitoring/releases/{scene.serving.pk}/").content.decode()
    assert '<tr><th scope="row">production</th><td>0.250</td>' in release_page
    empty = client.get(f"/monitoring/releases/{scene.at_gate.pk}/").content.decode()
    assert f"No live quality, abnormal-output or drift figures for release #{scene.at_gate.pk} yet" in empty


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_chromium_draws_the_monitoring_charts(users, open_as):
    scene = scenes.build(users)
    watched(scene, 40)
    page = open_as("victor")
    page.goto("/environments/production/")
    page.wait_for_function(DRAWN, arg="chart-drift")  # the panel arrives after the page (htmx)
    data = page.evaluate("id => Chart.getChart(document.getElementById(id)).data.datasets.map(s => s.data)",
                         "chart-drift")
    assert [p["y"] for p in data[0]] == [round(0.02 * i, 2) for i in range(40)]
    abnormal = page.evaluate("Chart.getChart(document.getElementById('chart-abnormal')).data.datasets[0].data")
    assert [p["y"] for p in abnormal[:2]] == [1.0, 2.0]  # percent of rows
    quality = page.evaluate("Chart.getChart(document.getElementById('chart-live-quality')).data.datasets[0].data")
    assert quality[0]["y"] == 1.0 and quality[-1]["y"] == 0.25
    page.goto(f"/releases/{scene.serving.pk}/")
    page.wait_for_function(DRAWN, arg="chart-drift")
    assert page.evaluate("Chart.getChart(document.getElementById('chart-drift')).data.datasets.length") == 1


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_chart_without_figures_says_so_and_the_others_still_draw(users, open_as):
    """Collections without labels or drift yet (a release's first minutes): the abnormal-output chart
    draws, the live-quality and drift charts say they have nothing, and no script error happens."""
    scene = scenes.build(users)
    production = Environment.objects.get(name="production")
    WatchSample.objects.bulk_create(WatchSample(environment=production, release=scene.serving,
                                                at=NOW + timedelta(seconds=15 * i), rows=100, nan=i)
                                    for i in range(5))
    page = open_as("victor")
    for url in ("/environments/production/", f"/releases/{scene.serving.pk}/"):
        page.goto(url)
        page.wait_for_function(DRAWN, arg="chart-abnormal")
        abnormal = page.evaluate("Chart.getChart(document.getElementById('chart-abnormal')).data.datasets[0].data")
        assert [p["y"] for p in abnormal] == [0.0, 1.0, 2.0, 3.0, 4.0]
        assert page.evaluate("Chart.getChart(document.getElementById('chart-live-quality'))") is None
        assert page.locator("#chart-live-quality").is_hidden() and page.locator("#chart-drift").is_hidden()
        assert page.locator("#monitoring-figures .chart-empty").all_inner_texts() == [
            "No live accuracy yet: it appears once labels are posted through the feedback API.",
            "No drift figures yet: drift is measured once enough requests have been served."]
