"""production_gate: people approve the move to production when the policy asks for it."""

from workers.context import WAIT, StageContext


def run(ctx: StageContext) -> str | None:
    if ctx.policy.production_approvals == 0:
        ctx.log("the policy asks for no production approval")
        return None
    return WAIT
