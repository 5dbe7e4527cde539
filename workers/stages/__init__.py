"""Stage functions by name. Each takes a StageContext and returns None, WAIT or APPROVED."""

from collections.abc import Callable

from workers.context import StageContext
from workers.stages import compress, convert, deploy, evaluate, gate, package, production_gate, validate

STAGE_FUNCTIONS: dict[str, Callable[[StageContext], str | None]] = {
    "validate": validate.run,
    "convert": convert.run,
    "compress": compress.run,
    "evaluate": evaluate.run,
    "gate": gate.run,
    "package": package.run,
    "deploy_staging": deploy.run_staging,
    "production_gate": production_gate.run,
    "canary": deploy.run_canary,
}
