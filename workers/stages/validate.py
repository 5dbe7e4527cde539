"""validate: the evaluation data loads safely, and the model is valid ONNX that fits that data."""

from workers.context import StageContext, StageFailed
from workers.ml.evalset import EvalDataError, load_evalset
from workers.ml.validate import ModelInvalid, validate_model


def run(ctx: StageContext) -> None:
    ctx.progress(5, "loading evaluation data")
    try:
        evalset = load_evalset(ctx.eval_data_path)
    except EvalDataError as exc:
        raise StageFailed(f"evaluation data: {exc}") from None
    rows = len(next(iter(evalset.inputs.values())))
    ctx.log(f"evaluation data: {rows} rows, inputs {', '.join(evalset.inputs) or '-'}, "
            f"labels {'yes' if evalset.labels is not None else 'no'}")
    if ctx.version.artifact.file_format != "onnx":
        ctx.log(f"a {ctx.version.artifact.file_format} build: the model is checked once converted to ONNX")
        return
    ctx.progress(30, "checking the ONNX model")
    try:
        signature = validate_model(ctx.artifact_path, evalset, ctx.model.task)
    except ModelInvalid as exc:
        raise StageFailed(f"model: {exc}") from None
    ctx.log("inputs: " + ", ".join(f"{n} {t}{list(s)}" for n, t, s in signature.inputs))
    ctx.log("outputs: " + ", ".join(f"{n} {t}{list(s)}" for n, t, s in signature.outputs))
