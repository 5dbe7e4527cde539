"""compress: every candidate the policy asks for, each stored as an artifact with its recipe or error."""

from releases.storage import get_store
from workers.compression import compression_policy, fp32_artifact, store_candidate
from workers.context import StageContext
from workers.ml.compress import build_candidates
from workers.ml.evalset import load_evalset


def run(ctx: StageContext) -> None:
    policy = compression_policy(ctx.policy, ctx.version.metadata)
    if not policy.kinds:
        ctx.log("the policy asks for no candidates")
        return
    parent = fp32_artifact(ctx.release)
    ctx.release.artifacts.exclude(kind="onnx-fp32").delete()
    candidates = build_candidates(get_store().local_path(parent.sha256), load_evalset(ctx.eval_data_path),
                                  ctx.model.task, policy, ctx.work_dir(), device=ctx.device, progress=ctx.progress)
    for candidate in candidates:
        artifact = store_candidate(ctx.release, parent, candidate)
        built = f"{artifact.size_bytes / 1e6:.2f} MB"
        ctx.log(f"{candidate.kind}: " + (candidate.outcome if candidate.error else built))
