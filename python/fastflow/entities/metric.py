from __future__ import annotations

from fastflow.entities._base import _MlflowObject


class Metric(_MlflowObject):
    """One logged point of a metric."""

    def __init__(
        self,
        key,
        value,
        timestamp,
        step,
        model_id=None,
        dataset_name=None,
        dataset_digest=None,
        run_id=None,
    ):
        self._key = key
        self._value = value
        self._timestamp = timestamp
        self._step = step
        self._model_id = model_id
        self._dataset_name = dataset_name
        self._dataset_digest = dataset_digest
        self._run_id = run_id

    key = property(lambda self: self._key)
    value = property(lambda self: self._value)
    timestamp = property(lambda self: self._timestamp)
    step = property(lambda self: self._step)
    model_id = property(lambda self: self._model_id)
    dataset_name = property(lambda self: self._dataset_name)
    dataset_digest = property(lambda self: self._dataset_digest)
    run_id = property(lambda self: self._run_id)

    def __eq__(self, other):
        if not isinstance(other, Metric):
            return False
        same_value = self.value == other.value or (
            self.value != self.value and other.value != other.value
        )
        return (self.key, self.timestamp, self.step) == (
            other.key,
            other.timestamp,
            other.step,
        ) and same_value

    def __hash__(self):
        return hash((self.key, self.timestamp, self.step))

    def to_dictionary(self):
        return {
            "key": self.key,
            "value": self.value,
            "timestamp": self.timestamp,
            "step": self.step,
        }


class _KeyValue(_MlflowObject):
    def __init__(self, key, value):
        self._key = key
        self._value = value

    key = property(lambda self: self._key)
    value = property(lambda self: self._value)

    def __hash__(self):
        return hash((self._key, self._value))


class Param(_KeyValue):
    """A run parameter: a key and its (immutable) string value."""


class RunTag(_KeyValue):
    """A run tag: a key and a string value."""


class ExperimentTag(_KeyValue):
    """An experiment tag."""
