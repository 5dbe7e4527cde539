"""What can go wrong serving a model (no heavy imports: the configuration loads before the fork)."""


class ModelLoadError(RuntimeError):
    """The model file is missing, corrupt, not what was released, or not servable."""


class InputError(ValueError):
    """A request's inputs do not fit the model's signature; the message says why."""


class InferenceError(RuntimeError):
    """Validated inputs on which the model still fails (e.g. inconsistent dynamic dimensions)."""
