"""A running stage's sign of life: a thread renews the stage's heartbeat while its run holds the claim.

The sweeper takes a stage whose heartbeat is older than SLIPWAY_STAGE_HEARTBEAT_TIMEOUT_S as lost
(its worker was killed, its machine went away) and retries it on another worker.
"""

import logging
import threading
from collections.abc import Callable

from django.conf import settings
from django.db import DatabaseError, connection
from django.utils import timezone

from releases.models import StageRun
from releases.models.pipeline import StageStatus

log = logging.getLogger(__name__)


class Periodic:
    """`with Periodic(every, tick, name):` calls `tick` every `every` seconds in a thread while the block
    runs, until `tick` returns False; the thread's database connection is closed when it ends."""

    def __init__(self, every: float, tick: Callable[[], bool], name: str) -> None:
        self.every, self.tick = every, tick
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def __enter__(self) -> "Periodic":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        try:
            while not self._stop.wait(self.every) and self.tick():
                pass
        finally:
            connection.close()


class Heartbeat(Periodic):
    """Renews the stage's heartbeat every SLIPWAY_STAGE_HEARTBEAT_S seconds while the block runs; sets
    `lost` and stops when another run holds the stage."""

    def __init__(self, stage_id: int, claim: str) -> None:
        self.stage_id, self.claim = stage_id, claim
        self.lost = threading.Event()
        super().__init__(settings.SLIPWAY_STAGE_HEARTBEAT_S, self._beat, f"heartbeat-{stage_id}")

    def _beat(self) -> bool:
        try:
            renewed = StageRun.objects.filter(pk=self.stage_id, claim=self.claim,
                                              status=StageStatus.RUNNING).update(heartbeat_at=timezone.now())
        except DatabaseError:  # the database restarts: try again on the next beat, on a new connection
            log.warning("heartbeat of stage %s: the database did not answer", self.stage_id, exc_info=True)
            connection.close()
            return True
        if not renewed:
            log.warning("stage %s is no longer held by this run (claim %s)", self.stage_id, self.claim)
            self.lost.set()
        return bool(renewed)
