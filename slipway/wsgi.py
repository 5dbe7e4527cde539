import os

from django.core.wsgi import get_wsgi_application

from slipway.celery import load_sending

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "slipway.settings")
application = get_wsgi_application()
load_sending()  # a worker's first task message then pays only for connecting to the broker
