"""Test settings: the real services users run — PostgreSQL and Redis on 127.0.0.1 unless told otherwise."""

import os
import tempfile

os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/15")
os.environ.setdefault("SLIPWAY_DATA_DIR", tempfile.mkdtemp(prefix="slipway-test-"))

from slipway.settings import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast users; never in production
WHITENOISE_USE_FINDERS = True  # no collectstatic before tests
# No registry is reachable here: images build on the local base (python -m workers.shipping.base_image).
os.environ.setdefault("SLIPWAY_BASE_IMAGE", "slipway-base:bookworm")
SLIPWAY_BASE_IMAGE = os.environ["SLIPWAY_BASE_IMAGE"]
