import gc
import os

from django.core.wsgi import get_wsgi_application

from slipway.celery import load_sending

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "slipway.settings")
application = get_wsgi_application()
load_sending()  # a worker's first task message then pays only for connecting to the broker
# What is loaded by now (Django, DRF, numpy, settings: ~160k objects) lives as long as the process. Frozen,
# the cycle collector no longer scans it, and a full collection comes once requests' own cyclic garbage
# (DRF's serializers and responses are reference cycles) reaches a quarter of what requests keep, not of
# everything loaded: unfrozen, up to ~40k objects of dead responses waited for it, and each wait raised
# the memory high-water mark (web RSS +3 MB/min under bench/soak.py).
gc.freeze()
