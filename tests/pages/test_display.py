"""How times and figures read on the pages."""

from datetime import UTC, datetime, timedelta

import pytest
from django.test import override_settings

from releases.pages.display import ago, figure, moment

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(("before", "text"), [
    (timedelta(seconds=59), "just now"), (timedelta(seconds=60), "1 minute ago"),
    (timedelta(minutes=59, seconds=59), "59 minutes ago"), (timedelta(hours=1), "1 hour ago"),
    (timedelta(days=1, hours=23), "1 day ago"), (timedelta(days=45), "1 month ago"),
    (timedelta(days=800), "2 years ago"), (timedelta(seconds=-30), "just now"),
])
def test_ago_names_the_largest_whole_unit(before, text):
    assert ago(NOW - before, NOW) == text


@override_settings(TIME_ZONE="Europe/Berlin")
def test_a_moment_is_relative_with_the_absolute_time_as_its_title_in_the_site_time_zone():
    m = moment(NOW - timedelta(minutes=5), NOW)
    assert m.html() == ('<time datetime="2026-03-01T12:55:00+01:00" title="2026-03-01 12:55:00 CET">'
                        "5 minutes ago</time>")
    assert m.full() == ('<span><time datetime="2026-03-01T12:55:00+01:00" title="5 minutes ago">'
                        '2026-03-01 12:55:00 CET</time> <span class="muted">(5 minutes ago)</span></span>')
    assert moment(None) is None


@pytest.mark.parametrize(("value", "unit", "text"), [
    (400_000, "bytes", "390.6\xa0KB"), (2.2, "ms", "2.2 ms"), (0.009764, "ms", "0.00976 ms"),
    (1234.5, "ms", "1,234 ms"), (0.9093, "ratio", "0.9093"),
    (1_913_761.4, "samples/s", "1,913,761 samples/s"), (0.000123, "", "0.000123"),
])
def test_figures_read_with_their_units(value, unit, text):
    assert figure(value, unit) == text
