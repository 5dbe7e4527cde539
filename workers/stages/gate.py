"""gate: the automatic checks, then stop for people when the policy asks for approvals."""

from releases.gates import run_automatic_gate
from workers.context import APPROVED, WAIT, StageContext, StageFailed


def run(ctx: StageContext) -> str:
    checks = run_automatic_gate(ctx.release, ctx.policy)
    for check in checks:
        ctx.log(check.detail)
    failed = [c.detail for c in checks if not c.passed]
    if failed:
        raise StageFailed("automatic gate: " + "; ".join(failed))
    return WAIT if ctx.policy.required_approvals > 0 else APPROVED
