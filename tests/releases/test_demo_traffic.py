"""`manage.py demo_traffic`'s default rate is enough for the demo's canary to be judged: at the default
policy's share and window, the canary (and the stable release) see more than the requests it needs, so a
newcomer following README sees it promote rather than wait as inconclusive."""

from releases.management.commands.demo_traffic import Command
from releases.models import ReleasePolicy


def default(field: str) -> float:
    return ReleasePolicy._meta.get_field(field).default


def test_the_default_traffic_gives_the_default_canary_the_requests_it_needs() -> None:
    rate = Command().create_parser("manage.py", "demo_traffic").parse_args([]).rate
    window_s = default("canary_minutes") * 60
    canary = rate * default("canary_percent") / 100 * window_s
    stable = rate * (100 - default("canary_percent")) / 100 * window_s
    assert (rate, window_s, canary, stable) == (5.0, 300.0, 150.0, 1350.0)
    assert min(canary, stable) >= 2 * default("canary_min_requests")  # twice over: room for a slow start
