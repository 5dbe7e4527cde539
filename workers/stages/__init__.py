"""Stage functions by name. Each takes a StageContext and returns None, WAIT or APPROVED."""

from collections.abc import Callable

from workers.context import StageContext
from workers.stages import evaluate, gate, validate

STAGE_FUNCTIONS: dict[str, Callable[[StageContext], str | None]] = {
    "validate": validate.run,
    "evaluate": evaluate.run,
    "gate": gate.run,
}
