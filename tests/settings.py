"""Test settings: the real services users run — PostgreSQL and Redis on 127.0.0.1 unless told otherwise.

SLIPWAY_TEST_SLOT=N (0 to 7) gives a test run its own database, Redis database and proxy ports, so
that two runs on one machine (two checkouts, or a benchmark beside the tests) do not collide.
"""

import os
import tempfile

SLOT = int(os.environ.get("SLIPWAY_TEST_SLOT", "0"))
if not 0 <= SLOT <= 7:
    raise ValueError(f"SLIPWAY_TEST_SLOT must be 0 to 7, not {SLOT}")
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres")
os.environ.setdefault("REDIS_URL", f"redis://127.0.0.1:6379/{15 - SLOT}")
os.environ.setdefault("SLIPWAY_DATA_DIR", tempfile.mkdtemp(prefix="slipway-test-"))
os.environ.setdefault("SLIPWAY_FIRST_PROXY_PORT", str(18081 + 10 * SLOT))
# Webhook retries in a second, not minutes (the worker process reads them from the environment too).
os.environ.setdefault("SLIPWAY_WEBHOOK_BACKOFF_S", "0.25")
os.environ.setdefault("SLIPWAY_WEBHOOK_MAX_ATTEMPTS", "3")
# The test receivers listen on loopback: an internal receiver, let in as a user would (tests/security closes it).
os.environ.setdefault("SLIPWAY_WEBHOOK_ALLOWED_NETWORKS", "127.0.0.0/8")

from slipway.settings import *  # noqa: E402, F403

DATABASES["default"]["TEST"] = {"NAME": f"test_slipway_{SLOT}"}  # noqa: F405
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast users; never in production
WHITENOISE_USE_FINDERS = True  # no collectstatic before tests
# No registry is reachable here: images build on the local base (python -m shipping.base_image).
os.environ.setdefault("SLIPWAY_BASE_IMAGE", "slipway-base:bookworm")
SLIPWAY_BASE_IMAGE = os.environ["SLIPWAY_BASE_IMAGE"]
