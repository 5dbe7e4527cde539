"""Send the demo model's evaluation samples to the environments' stable addresses, as users would.

A canary is judged on the requests it served within its window (the policy's `canary_minutes`,
5 by default): with fewer than `canary_min_requests` (50) for the canary or for the stable release
it fails, and the stable release keeps serving. At the default 10 % share that needs at least
~2 requests a second in production for 5 minutes; this sends 5 a second to each environment.
"""

import itertools
import time
from collections import Counter

import numpy as np
import requests
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from releases.models import Environment
from serving import oip

MODEL = "digits"


class Command(BaseCommand):
    help = "Send demo traffic (the digits model's evaluation samples) to staging and production."

    def add_arguments(self, parser) -> None:  # noqa: ANN001
        parser.add_argument("--rate", type=float, default=5.0, help="requests per second to each environment")
        parser.add_argument("--minutes", type=float, default=10.0, help="how long (0: until Ctrl-C)")
        parser.add_argument("--environment", action="append", dest="environments",
                            help="only this environment (repeat for several); default: all but Kubernetes ones")
        parser.add_argument("--report-every", type=float, default=10.0, help="seconds between summary lines")

    def handle(self, rate: float, minutes: float, environments: list[str] | None, report_every: float,
               **options) -> None:
        from sklearn.datasets import load_digits

        if rate <= 0:
            raise CommandError("--rate must be positive")
        chosen = Environment.objects.exclude(target="kubernetes").order_by("position", "name")
        if environments:
            chosen = chosen.filter(name__in=environments)
        addresses = {e.name: f"http://{settings.SLIPWAY_PROXY_HOST}:{e.proxy_port}{oip.infer_path(MODEL)}"
                     for e in chosen}
        if not addresses:
            raise CommandError(f"no such environment: {', '.join(environments or [])}")
        rows = itertools.cycle((load_digits().data[1400:] / 16.0).tolist())  # the demo model's evaluation rows
        served: dict[str, Counter[str]] = {name: Counter() for name in addresses}
        session = requests.Session()
        self.stdout.write(f"Sending {rate:g} requests/s to " + ", ".join(f"{n} ({a})" for n, a in addresses.items())
                          + (f" for {minutes:g} min" if minutes else "") + "; Ctrl-C stops.")
        started = next_report = time.monotonic()
        sent = 0
        try:
            while not minutes or time.monotonic() - started < minutes * 60:
                for name, address in addresses.items():
                    served[name][self._send(session, address, next(rows))] += 1
                sent += 1
                if time.monotonic() >= next_report:
                    self._report(served)
                    next_report += report_every
                time.sleep(max(0.0, started + sent / rate - time.monotonic()))
        except KeyboardInterrupt:
            pass
        self._report(served)

    @staticmethod
    def _send(session: requests.Session, address: str, row: list[float]) -> str:
        """Which release answered ('release #N'), or why no release did."""
        try:
            body = oip.request_document({"pixels": np.asarray([row], dtype=np.float32)})
            answer = session.post(address, json=body, timeout=10)
        except requests.RequestException as exc:
            return f"no answer ({type(exc).__name__})"
        if answer.status_code != 200:
            return f"HTTP {answer.status_code}"
        return f"release #{answer.headers.get('X-Release-Id', '?')}"

    def _report(self, served: dict[str, Counter[str]]) -> None:
        stamp = time.strftime("%H:%M:%S")
        for name, counts in served.items():
            parts = ", ".join(f"{who}: {n}" for who, n in sorted(counts.items()))
            self.stdout.write(f"{stamp} {name}: {sum(counts.values())} requests ({parts or 'none yet'})")
