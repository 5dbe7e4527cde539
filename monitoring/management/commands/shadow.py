"""`manage.py shadow start <environment> <release> [--share 0.1] [--minutes 10] [--min-pairs 200]`,
`manage.py shadow stop <environment>`, `manage.py shadow show <environment>`."""

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from monitoring.models import ShadowRun
from releases.models import Environment, Release


class Command(BaseCommand):
    help = "Place a release in shadow in an environment, show its paired figures, or stop it."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("action", choices=["start", "stop", "show"])
        parser.add_argument("environment")
        parser.add_argument("release", nargs="?", type=int)
        parser.add_argument("--share", type=float, default=0.1)
        parser.add_argument("--minutes", type=float, default=10.0)
        parser.add_argument("--min-pairs", type=int, default=200)

    def handle(self, *args: object, **options: Any) -> None:
        from monitoring.shadowing import collect_one
        from workers import shadowing

        environment = Environment.objects.filter(name=options["environment"]).first()
        if environment is None:
            raise CommandError(f"no environment {options['environment']!r}")
        running = ShadowRun.objects.filter(environment=environment, stopped_at=None).first()
        if options["action"] == "start":
            release = Release.objects.filter(pk=options["release"]).first()
            if release is None:
                raise CommandError(f"no release {options['release']!r}")
            try:
                run = shadowing.start(environment, release, options["share"], minutes=options["minutes"],
                                      min_pairs=options["min_pairs"])
            except shadowing.ShadowRefused as exc:
                raise CommandError(str(exc)) from None
        elif running is None:
            raise CommandError(f"no release is in shadow in {environment}")
        else:
            run = shadowing.stop(running) if options["action"] == "stop" else collect_one(running)
        self.stdout.write(json.dumps({"run": run.pk, "shadow": run.shadow_id, "active": run.active_id,
                                      "verdict": run.verdict, "reason": run.reason, "figures": run.figures}))
