"""In Chromium, under the strict CSP: an admin creates a subscription through the page's form and gets
its secret once; the subscription appears in the list."""

import pytest

from tests.browser import screenshot
from tests.conftest import make_user
from webhooks.models import Subscription

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)


def test_an_admin_creates_a_subscription_in_the_browser(open_as):
    make_user("ada", "admin")
    page = open_as("ada")
    page.get_by_role("link", name="Webhooks").click()
    page.get_by_label("Name").fill("chatops")
    page.get_by_label("URL").fill("https://hooks.example.com/slipway")
    page.get_by_label("gate_waiting: a release waits for approvals").check()
    page.get_by_label("rolled_back: an environment was rolled back").check()
    page.get_by_role("button", name="Create").click()
    subscription = Subscription.objects.get()
    page.wait_for_url(f"**/webhooks/{subscription.pk}/")
    assert page.locator("p.notice code").first.inner_text() == subscription.secret
    assert subscription.events == ["gate_waiting", "rolled_back"]
    page.get_by_role("link", name="← All subscriptions").click()
    assert page.get_by_role("link", name="chatops").is_visible()
    screenshot(page, "webhooks")
