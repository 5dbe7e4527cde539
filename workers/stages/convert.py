"""convert: a PyTorch build (torch.export archive, or safetensors with a registered architecture) becomes
ONNX, checked for parity with torch; an ONNX build passes through."""

from workers.compression import original_with_suffix, save_metrics, store_candidate
from workers.context import StageContext, StageFailed
from workers.ml.compress import Candidate
from workers.ml.convert import ConversionError, convert_to_onnx
from workers.ml.evalset import load_evalset
from workers.ml.evaluate import Measurement
from workers.ml.validate import ModelInvalid, validate_model


def run(ctx: StageContext) -> None:
    if ctx.version.artifact.file_format == "onnx":
        ctx.log("the build is ONNX already")
        return
    evalset = load_evalset(ctx.eval_data_path)
    metadata = ctx.version.metadata
    try:
        conversion = convert_to_onnx(original_with_suffix(ctx.release, ctx.work_dir()), ctx.work_dir(), evalset,
                                     architecture=metadata.get("architecture"), config=metadata.get("config"),
                                     progress=ctx.progress)
        validate_model(conversion.path, evalset)
    except (ConversionError, ModelInvalid, ValueError) as exc:
        raise StageFailed(f"conversion to ONNX: {exc}") from None
    ctx.release.artifacts.filter(kind="onnx-fp32").delete()
    artifact = store_candidate(ctx.release, ctx.version.artifact,
                               Candidate("onnx-fp32", conversion.path, conversion.recipe))
    if conversion.parity_max_abs_diff is not None:
        save_metrics(ctx.release, artifact, {"conversion_parity_max_abs_diff": Measurement(
            conversion.parity_max_abs_diff, "")})
    ctx.log(f"converted {conversion.source_format} to ONNX ({artifact.size_bytes / 1e6:.2f} MB), "
            f"parity with torch: max abs diff {conversion.parity_max_abs_diff}")
