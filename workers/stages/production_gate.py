"""production_gate: people approve the move to production when the policy, or production itself
(Environment.requires_approval), asks for it."""

from releases.approvals import required
from workers.context import WAIT, StageContext


def run(ctx: StageContext) -> str | None:
    if required(ctx.release, "production") == 0:
        ctx.log("neither the policy nor production asks for a production approval")
        return None
    return WAIT
