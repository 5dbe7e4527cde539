"""A rollback drill from a model's page in real headless Chromium, through a real HAProxy."""

import pytest

from releases.models import RollbackDrill
from tests.browser import screenshot
from tests.conftest import make_user
from tests.haproxy_scene import served_by

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)


def test_an_on_call_engineer_drills_a_rollback_from_the_model_page(production_behind_haproxy, users, open_as):
    releases, config = production_behind_haproxy["releases"], production_behind_haproxy["config"]
    previous, serving = releases["1.0.0"], releases["1.1.0"]
    make_user("olga", "on-call")

    viewer = open_as("victor")
    viewer.goto("/environments/production/models/digits/")
    assert viewer.locator("#drill p").first.inner_text() == "digits has not been drilled in production yet."
    assert viewer.get_by_role("button", name="Run a rollback drill").is_disabled()
    assert viewer.locator("#drill-why").inner_text() == (
        "You cannot run a drill now: only on-call engineers, deployers and admins may run a rollback drill.")

    page = open_as("olga")
    page.goto("/environments/production/models/digits/")
    page.get_by_role("button", name="Run a rollback drill").click()
    page.get_by_role("status").filter(has_text="Rollback drill of digits").wait_for()

    drill = RollbackDrill.objects.get()
    assert page.get_by_role("status").inner_text() == (
        f"Rollback drill of digits in production: back to #{previous.pk} in {drill.back_ms} ms, "
        f"forward to #{serving.pk} in {drill.forward_ms} ms.")
    assert page.locator("[data-drill-back]").inner_text() == f"{drill.back_ms} ms"
    assert page.locator("[data-drill-forward]").inner_text() == f"{drill.forward_ms} ms"
    assert page.locator("[data-drill-result]").inner_text().startswith("Last drill ")
    assert served_by(config, "digits") == str(serving.pk)
    assert page.locator("#history tbody tr").first.inner_text().split("\t")[1:] == [
        "drill", f"#{serving.pk} digits:1.1.0 · 100%", "olga", f"drill: forward to #{serving.pk}"]
    screenshot(page, "service-after-drill")
