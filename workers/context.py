"""What a stage function gets: the release's records, file paths, and ways to report progress."""

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from releases.models import Release, StageRun
from releases.models.pipeline import StageStatus
from releases.redact import without_paths
from releases.statemachine import StageBusy
from releases.storage import get_store, work_root

PROGRESS_EVERY_S = 0.5


class StageFailed(Exception):
    """A stage cannot succeed; the message is the reason shown on the release page."""


@dataclass
class StageContext:
    release: Release
    stage: StageRun
    device: str
    superseded: threading.Event = field(default_factory=threading.Event)  # set when another run holds the stage
    # Counted from the start: a stage shorter than PROGRESS_EVERY_S writes no progress of its own.
    _last_progress: float = field(default_factory=time.monotonic, repr=False)

    @property
    def version(self):  # noqa: ANN201
        return self.release.version

    @property
    def model(self):  # noqa: ANN201
        return self.release.version.model

    @property
    def policy(self):  # noqa: ANN201
        return self.release.version.model.policy

    @property
    def artifact_path(self) -> Path:
        return get_store().local_path(self.version.artifact.sha256)

    @property
    def eval_data_path(self) -> Path:
        return get_store().local_path(self.version.eval_data.sha256)

    def work_dir(self) -> Path:
        path = work_root() / f"release-{self.release.pk}" / self.stage.name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def progress(self, percent: float, step: str) -> None:
        """Report progress; written at most every PROGRESS_EVERY_S so a fast loop costs no queries."""
        if self.superseded.is_set():
            raise StageBusy(f"stage {self.stage.name} of release #{self.release.pk} was taken over by another run")
        now = time.monotonic()
        if now - self._last_progress < PROGRESS_EVERY_S and percent < 100:
            return
        self._last_progress = now
        self._mine().update(progress=round(min(max(percent, 0), 100), 1), step=without_paths(step)[:200])

    def log(self, line: str) -> None:
        """Add a line to the stage's log, which people read: server paths cut (releases.redact)."""
        self.stage.add_log(line)
        self._mine().update(log=self.stage.log)

    def _mine(self):  # noqa: ANN202 - the stage row while this run holds it
        return StageRun.objects.filter(pk=self.stage.pk, claim=self.stage.claim)

    def hold_claim(self) -> None:
        """Lock the stage row until the surrounding transaction ends, so no other run can take the stage
        meanwhile; raises StageBusy if another run holds it already. Call it before a side effect that
        must happen once (traffic to a release)."""
        if not self._mine().select_for_update().filter(status=StageStatus.RUNNING).exists():
            raise StageBusy(f"stage {self.stage.name} of release #{self.release.pk} is held by another run now")


# What a stage function may return besides None (done, go on):
WAIT = "wait"  # stop here until people decide (the approval gate)
WATCH = "watch"  # stop here while scheduled checks watch a canary (releases/canaries.py)
SHADOW = "shadow"  # stop here until the release's shadow verdict is reached (monitoring/shadowing.py)
APPROVED = "approved"  # the gate passed and needs nobody's approval
