from __future__ import annotations

from fastflow.entities._base import _MlflowObject


class Experiment(_MlflowObject):
    """An experiment: a named group of runs with an artifact location and tags."""

    def __init__(
        self,
        experiment_id,
        name,
        artifact_location,
        lifecycle_stage,
        tags=None,
        creation_time=None,
        last_update_time=None,
        workspace=None,
        trace_location=None,
        effective_trace_archival_retention=None,
    ):
        self._experiment_id = experiment_id
        self._name = name
        self._artifact_location = artifact_location
        self._lifecycle_stage = lifecycle_stage
        self._tags = dict(tags or {})
        self._creation_time = creation_time
        self._last_update_time = last_update_time
        self._workspace = workspace
        self._trace_location = trace_location
        self._effective_trace_archival_retention = effective_trace_archival_retention

    experiment_id = property(lambda self: self._experiment_id)
    name = property(lambda self: self._name)
    artifact_location = property(lambda self: self._artifact_location)
    lifecycle_stage = property(lambda self: self._lifecycle_stage)
    tags = property(lambda self: self._tags)
    creation_time = property(lambda self: self._creation_time)
    last_update_time = property(lambda self: self._last_update_time)
    workspace = property(lambda self: self._workspace)
    trace_location = property(lambda self: self._trace_location)
    effective_trace_archival_retention = property(
        lambda self: self._effective_trace_archival_retention
    )

    @classmethod
    def _from_row(cls, row):
        experiment_id, name, location, stage, created, updated, tags = row
        # Every experiment fastflow writes or reads lives in MLflow's default workspace.
        return cls(experiment_id, name, location, stage, dict(tags), created, updated, "default")
