"""Beat runs staging's rollback drills (workers.tasks.drill_staging) only when SLIPWAY_DRILL_STAGING_EVERY_S
says how often."""

import json
import os
import subprocess
import sys


def scheduled_drills(every: str) -> dict | None:
    """Beat's drills entry as settings make it with SLIPWAY_DRILL_STAGING_EVERY_S (read in a fresh process)."""
    script = ("import json, django; django.setup(); from django.conf import settings; from slipway.celery import app; "
              "app.loader.import_default_modules(); entry = settings.CELERY_BEAT_SCHEDULE.get('drills'); "
              "print(json.dumps(entry and entry | {'registered': entry['task'] in app.tasks}))")
    env = os.environ | {"DJANGO_SETTINGS_MODULE": "slipway.settings", "SLIPWAY_DRILL_STAGING_EVERY_S": every}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.splitlines()[-1])


def test_beat_drills_staging_only_when_asked(settings):
    assert "SLIPWAY_DRILL_STAGING_EVERY_S" not in os.environ and "drills" not in settings.CELERY_BEAT_SCHEDULE
    assert scheduled_drills("3600") == {"task": "workers.tasks.drill_staging", "schedule": 3600.0,
                                        "options": {"queue": "deploy", "expires": 3600.0}, "registered": True}
