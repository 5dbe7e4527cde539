"""What a stage function gets: the release's records, file paths, and ways to report progress."""

import time
from dataclasses import dataclass, field
from pathlib import Path

from django.utils import timezone

from releases import store
from releases.models import Release, StageRun

PROGRESS_EVERY_S = 0.5


class StageFailed(Exception):
    """A stage cannot succeed; the message is the reason shown on the release page."""


@dataclass
class StageContext:
    release: Release
    stage: StageRun
    device: str
    _last_progress: float = field(default=0.0, repr=False)

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
        return store.path_for(self.version.artifact.sha256)

    @property
    def eval_data_path(self) -> Path:
        return store.path_for(self.version.eval_data.sha256)

    def work_dir(self) -> Path:
        path = store.root() / "work" / f"release-{self.release.pk}" / self.stage.name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def progress(self, percent: float, step: str) -> None:
        """Report progress; written at most every PROGRESS_EVERY_S so a fast loop costs no queries."""
        now = time.monotonic()
        if now - self._last_progress < PROGRESS_EVERY_S and percent < 100:
            return
        self._last_progress = now
        StageRun.objects.filter(pk=self.stage.pk).update(progress=round(min(max(percent, 0), 100), 1),
                                                         step=step[:200])

    def log(self, line: str) -> None:
        stamp = timezone.now().strftime("%H:%M:%S")
        self.stage.log += f"{stamp} {line}\n"
        StageRun.objects.filter(pk=self.stage.pk).update(log=self.stage.log)


# What a stage function may return besides None (done, go on):
WAIT = "wait"  # stop here until people decide (the approval gate)
APPROVED = "approved"  # the gate passed and needs nobody's approval
