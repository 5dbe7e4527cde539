"""Distillation: train a small registered architecture on the original model's soft targets.

The teacher is the original ONNX model, run with ONNX Runtime on the training inputs that the
evaluation data carries (``train:inputs``, optional ``train:labels``); the student is built from
the policy's architecture and config and trained with Adam:

* classification: KL divergence between softened distributions (temperature T, scaled by T²),
  averaged with cross-entropy on the true labels when given;
* regression and embedding: mean squared error to the teacher's outputs (averaged with the
  true targets for regression when given).

The student is exported like any torch model (:func:`workers.ml.convert.export_module`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional

from workers.ml.architectures import build_module
from workers.ml.candidates import graph
from workers.ml.convert import export_module
from workers.ml.evalset import EvalSet
from workers.ml.policy import BuildContext
from workers.ml.runtime import make_session

BATCH = 256


class NotApplicable(ValueError):
    """The candidate cannot be built for this model or policy (not a failure of the model)."""


def distilled(source: Path, out: Path, ctx: BuildContext) -> dict[str, Any]:
    policy = ctx.policy
    if policy.student_architecture is None:
        raise NotApplicable("the policy names no student architecture")
    if "inputs" not in ctx.evalset.extra:
        raise NotApplicable("the evaluation data has no 'train:inputs' to distil on")
    teacher = make_session(source, ctx.device)
    if len(teacher.get_inputs()) != 1:
        raise NotApplicable("distillation supports single-input teachers")
    input_name = teacher.get_inputs()[0].name
    inputs = ctx.evalset.extra["inputs"].astype(np.float32)
    labels = ctx.evalset.extra.get("labels")
    ctx.progress(5, "running the teacher on the training data")
    targets = np.concatenate(
        [teacher.run(None, {input_name: inputs[i : i + BATCH]})[0] for i in range(0, len(inputs), BATCH)]
    )
    student = build_module(policy.student_architecture, policy.student_config).train()
    loss = _train(student, inputs, targets, labels, ctx)
    student.eval()
    ctx.progress(85, "exporting the student")
    sample = EvalSet({input_name: inputs[: min(len(inputs), 64)]})
    export = export_module(student, None, {}, sample, out, [input_name])
    teacher_params = sum(int(np.prod(t.dims)) for t in graph.load(source).graph.initializer)
    return {
        "student_architecture": policy.student_architecture,
        "student_config": dict(policy.student_config),
        "student_parameters": sum(p.numel() for p in student.parameters()),
        "teacher_parameters": teacher_params,
        "temperature": policy.distill_temperature,
        "epochs": policy.distill_epochs,
        "training_samples": len(inputs),
        "final_loss": round(loss, 6),
        "export_parity_max_abs_diff": export["parity_max_abs_diff"],
    }


def _train(
    student: torch.nn.Module,
    inputs: np.ndarray,
    targets: np.ndarray,
    labels: np.ndarray | None,
    ctx: BuildContext,
) -> float:
    policy = ctx.policy
    torch.manual_seed(0)
    x = torch.from_numpy(inputs)
    soft = torch.from_numpy(targets.astype(np.float32))
    hard = None if labels is None else torch.from_numpy(labels)
    optimiser = torch.optim.Adam(student.parameters(), lr=policy.distill_learning_rate)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=policy.distill_epochs)
    loss = torch.tensor(0.0)
    for epoch in range(policy.distill_epochs):
        order = torch.randperm(len(x))
        for start in range(0, len(x), BATCH):
            index = order[start : start + BATCH]
            optimiser.zero_grad()
            loss = _loss(ctx, student(x[index]), soft[index], None if hard is None else hard[index])
            loss.backward()
            optimiser.step()
        schedule.step()
        if epoch % max(1, policy.distill_epochs // 10) == 0:
            ctx.progress(10 + 70 * epoch / policy.distill_epochs, f"epoch {epoch + 1}: loss {loss.item():.4f}")
    return float(loss.item())


def _loss(ctx: BuildContext, output: torch.Tensor, soft: torch.Tensor, hard: torch.Tensor | None) -> torch.Tensor:
    if ctx.task == "classification":
        t = ctx.policy.distill_temperature
        kl = functional.kl_div(
            functional.log_softmax(output / t, dim=1),
            functional.softmax(soft / t, dim=1),
            reduction="batchmean",
        ) * (t * t)
        return kl if hard is None else 0.5 * kl + 0.5 * functional.cross_entropy(output, hard.long())
    mse = functional.mse_loss(output, soft.reshape(output.shape))
    if ctx.task == "regression" and hard is not None:
        return 0.5 * mse + 0.5 * functional.mse_loss(output, hard.reshape(output.shape).float())
    return mse
