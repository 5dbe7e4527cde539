"""evaluate: the task metric, latency and size of the release's model on its evaluation data."""

from releases.models import Metric
from workers.context import StageContext, StageFailed
from workers.ml.evalset import load_evalset
from workers.ml.evaluate import EvaluationError, evaluate


def run(ctx: StageContext) -> None:
    evalset = load_evalset(ctx.eval_data_path)
    try:
        result = evaluate(ctx.artifact_path, evalset, ctx.model.task, device=ctx.device,
                          progress=lambda pct, step: ctx.progress(pct, step))
    except EvaluationError as exc:
        raise StageFailed(str(exc)) from None
    Metric.objects.filter(release=ctx.release, artifact__isnull=True).delete()
    Metric.objects.bulk_create(Metric(release=ctx.release, name=name, value=m.value, unit=m.unit)
                               for name, m in sorted(result.metrics.items()))
    ctx.log("; ".join(f"{name} {m.value:.6g}{m.unit and ' ' + m.unit}" for name, m in sorted(result.metrics.items())))
