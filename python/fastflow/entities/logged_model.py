from __future__ import annotations

from fastflow.entities._base import _MlflowObject


class LoggedModelInput(_MlflowObject):
    """A logged model a run took as input."""

    def __init__(self, model_id):
        self._model_id = model_id

    model_id = property(lambda self: self._model_id)


class LoggedModelOutput(_MlflowObject):
    """A logged model a run produced, at the step it was logged at."""

    def __init__(self, model_id, step):
        self._model_id = model_id
        self._step = step

    model_id = property(lambda self: self._model_id)
    step = property(lambda self: self._step)

    def to_dictionary(self):
        return {"model_id": self.model_id, "step": self.step}
