"""Stage functions by name. Each takes a StageContext and returns None, WAIT or APPROVED."""

from collections.abc import Callable

from workers.context import StageContext
from workers.stages import compress, convert, deploy, evaluate, gate, llm, package, production_gate, validate

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

# A language model's own versions of the stages that depend on the kind of model (workers/stages/llm.py).
LANGUAGE_MODEL_STAGES: dict[str, Callable[[StageContext], str | None]] = {
    "validate": llm.validate,
    "convert": llm.convert_stage,
    "compress": llm.compress,
    "evaluate": llm.evaluate,
}


def stage_function(name: str, task: str) -> Callable[[StageContext], str | None]:
    if task == "language_model" and name in LANGUAGE_MODEL_STAGES:
        return LANGUAGE_MODEL_STAGES[name]
    return STAGE_FUNCTIONS[name]
