from __future__ import annotations

from fastflow.entities._base import _MlflowObject


class Dataset(_MlflowObject):
    """A dataset a run used: name, digest, where it came from, and its schema and profile
    (JSON text, or None)."""

    def __init__(self, name, digest, source_type, source, schema=None, profile=None):
        self._name = name
        self._digest = digest
        self._source_type = source_type
        self._source = source
        self._schema = schema
        self._profile = profile

    name = property(lambda self: self._name)
    digest = property(lambda self: self._digest)
    source_type = property(lambda self: self._source_type)
    source = property(lambda self: self._source)
    schema = property(lambda self: self._schema)
    profile = property(lambda self: self._profile)

    def to_dictionary(self):
        return {
            "name": self.name,
            "digest": self.digest,
            "source_type": self.source_type,
            "source": self.source,
            "schema": self.schema,
            "profile": self.profile,
        }


class InputTag(_MlflowObject):
    """A tag on one dataset input of a run, such as ``mlflow.data.context``."""

    def __init__(self, key, value):
        self._key = key
        self._value = value

    key = property(lambda self: self._key)
    value = property(lambda self: self._value)


class DatasetInput(_MlflowObject):
    """A dataset as a run's input, with the input's tags."""

    def __init__(self, dataset, tags=None):
        self._dataset = dataset
        self._tags = list(tags or [])

    dataset = property(lambda self: self._dataset)
    tags = property(lambda self: self._tags)

    def to_dictionary(self):
        return {
            "dataset": self.dataset.to_dictionary(),
            "tags": {tag.key: tag.value for tag in self.tags},
        }
