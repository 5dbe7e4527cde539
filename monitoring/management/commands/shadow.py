"""`manage.py shadow start <environment> <release> [--share 0.1] [--minutes 10] [--min-pairs 200]`,
`manage.py shadow stop|show <environment> [<model>]` (the model may be left out when only one of the
environment's services has a shadow)."""

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from monitoring.models import ShadowRun
from releases.actors import Actor
from releases.models import Release


class Command(BaseCommand):
    help = "Place a release in shadow for its model in an environment, show its paired figures, or stop it."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("action", choices=["start", "stop", "show"])
        parser.add_argument("environment")
        parser.add_argument("target", nargs="?", help="start: the release id; stop, show: the model name")
        parser.add_argument("--share", type=float, default=0.1)
        parser.add_argument("--minutes", type=float, default=10.0)
        parser.add_argument("--min-pairs", type=int, default=200)

    def handle(self, *args: object, **options: Any) -> None:
        from monitoring.api import ShadowRunSerializer
        from monitoring.shadowing import collect_one
        from workers import shadowing

        environment, target, actor = options["environment"], options["target"], Actor.system("manage.py shadow")
        try:
            if options["action"] == "start":
                release = (Release.objects.select_related("version__model").filter(pk=int(target)).first()
                           if target and target.isdigit() else None)
                if release is None:
                    raise CommandError(f"no release {target!r}")
                placed = shadowing.place(environment, release.version.model.name, release.pk, options["share"],
                                         actor, minutes=options["minutes"], min_pairs=options["min_pairs"])
                run = shadowing.launch_run(placed.pk) or placed
                if run.stopped_at is not None:
                    raise CommandError(run.reason)
            else:
                run = self._running(environment, target, shadowing)
                run = shadowing.stop(run, actor) if options["action"] == "stop" else collect_one(run)
        except shadowing.ShadowRefused as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(json.dumps(ShadowRunSerializer(run).data))

    @staticmethod
    def _running(environment: str, model: str | None, shadowing: Any) -> ShadowRun:
        if model is not None:
            run = shadowing.running(environment, model)
            if run is None:
                raise CommandError(f"no release of {model} is in shadow in {environment}")
            return run
        runs = list(ShadowRun.objects.filter(service__environment__name=environment, stopped_at=None)
                    .select_related("service__model", "service__environment"))
        if len(runs) != 1:
            names = ", ".join(sorted(run.service.model.name for run in runs)) or "none"
            raise CommandError(f"say which model; in shadow in {environment}: {names}")
        return runs[0]
