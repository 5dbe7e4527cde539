"""The compression lab: build every candidate the policy asks for from the converted fp32 model.

Each candidate is an ONNX file plus a recipe (how it was made). A candidate that cannot be built
comes back with its error and no file; it never stops the others. Candidates are then evaluated
(:func:`workers.ml.evaluate.evaluate`) and one is chosen (:func:`workers.ml.select.choose`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workers.ml.candidates.applicable import not_applicable_reason
from workers.ml.candidates.distill import NotApplicable, distilled
from workers.ml.candidates.mixed import int8_mixed
from workers.ml.candidates.prune import pruned
from workers.ml.candidates.quantize import fp16, int8_dynamic, int8_static
from workers.ml.evalset import EvalSet
from workers.ml.evaluate import Progress, Task
from workers.ml.policy import BuildContext, CompressionPolicy
from workers.ml.runtime import load_proto
from workers.ml.validate import ModelInvalid, validate_model

logger = logging.getLogger(__name__)

NOT_APPLICABLE = "not applicable: "  # how a candidate the model cannot have is worded everywhere

Builder = Callable[[Path, Path, BuildContext], dict[str, Any]]

BUILDERS: dict[str, Builder] = {
    "pruned": pruned,
    "int8-dynamic": int8_dynamic,
    "int8-static": int8_static,
    "int8-mixed": int8_mixed,
    "fp16": fp16,
    "distilled": distilled,
}


@dataclass(frozen=True)
class Candidate:
    kind: str
    path: Path | None  # None when it could not be built
    recipe: dict[str, Any]
    error: str | None = None

    @property
    def not_applicable(self) -> bool:
        return bool(self.error) and self.error.startswith(NOT_APPLICABLE)  # type: ignore[union-attr]

    @property
    def outcome(self) -> str:
        """How the build ended, in the words the compress log and the candidates table both use."""
        if self.error is None:
            return "built"
        return self.error if self.not_applicable else f"failed: {self.error}"


def build_candidates(
    original: Path,
    evalset: EvalSet,
    task: Task,
    policy: CompressionPolicy,
    out_dir: Path,
    *,
    device: str = "cpu",
    progress: Progress | None = None,
) -> list[Candidate]:
    """One :class:`Candidate` per kind in ``policy.kinds``, written under ``out_dir``.

    Every file is checked with :func:`workers.ml.validate.validate_model` against ``evalset``.
    Progress is reported as (percent of the whole run, step text).
    """
    policy.check()
    report = progress or (lambda percent, step: None)
    out_dir.mkdir(parents=True, exist_ok=True)
    candidates = []
    share = 100 / max(1, len(policy.kinds))
    proto = load_proto(original)
    for index, kind in enumerate(policy.kinds):
        start = index * share

        def sub(percent: float, step: str, start: float = start, kind: str = kind) -> None:
            report(round(start + share * percent / 100, 2), f"{kind}: {step}")

        sub(0, "building")
        reason = not_applicable_reason(kind, proto)
        if reason is not None:
            candidates.append(Candidate(kind, None, {}, NOT_APPLICABLE + reason))
        else:
            context = BuildContext(evalset, task, policy, device, sub)
            candidates.append(_build_one(kind, original, out_dir / f"{kind}.onnx", context))
        sub(100, candidates[-1].outcome)
    return candidates


def _build_one(kind: str, original: Path, out: Path, ctx: BuildContext) -> Candidate:
    try:
        recipe = BUILDERS[kind](original, out, ctx)
        validate_model(out, ctx.evalset)
    except NotApplicable as exc:
        return Candidate(kind, None, {}, f"{NOT_APPLICABLE}{exc}")
    except ModelInvalid as exc:
        return Candidate(kind, None, {}, f"the built model is invalid: {exc}")
    except Exception as exc:  # one broken technique must not stop the others
        logger.exception("building the %s candidate failed", kind)
        text = (str(exc).strip().splitlines() or [""])[0][:300]
        return Candidate(kind, None, {}, f"{type(exc).__name__}: {text}")
    return Candidate(kind, out, {"kind": kind} | recipe)
