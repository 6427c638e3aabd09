from __future__ import annotations

from fastflow.entities._base import _MlflowObject
from fastflow.entities.dataset import Dataset, DatasetInput, InputTag
from fastflow.entities.logged_model import LoggedModelInput, LoggedModelOutput
from fastflow.entities.metric import Metric, Param, RunTag


class RunInfo(_MlflowObject):
    """Metadata of a run: ids, name, status, times, artifact URI and lifecycle stage."""

    def __init__(
        self,
        run_id,
        experiment_id,
        user_id,
        status,
        start_time,
        end_time,
        lifecycle_stage,
        artifact_uri=None,
        run_name=None,
    ):
        self._run_id = run_id
        self._experiment_id = experiment_id
        self._user_id = user_id
        self._status = status
        self._start_time = start_time
        self._end_time = end_time
        self._lifecycle_stage = lifecycle_stage
        self._artifact_uri = artifact_uri
        self._run_name = run_name

    run_id = property(lambda self: self._run_id)
    experiment_id = property(lambda self: self._experiment_id)
    user_id = property(lambda self: self._user_id)
    status = property(lambda self: self._status)
    start_time = property(lambda self: self._start_time)
    end_time = property(lambda self: self._end_time)
    lifecycle_stage = property(lambda self: self._lifecycle_stage)
    artifact_uri = property(lambda self: self._artifact_uri)
    run_name = property(lambda self: self._run_name)

    @classmethod
    def _from_row(cls, row):
        run_id, experiment_id, name, user, status, start, end, artifact_uri, stage = row
        return cls(run_id, experiment_id, user, status, start, end, stage, artifact_uri, name)


class RunData(_MlflowObject):
    """A run's latest metric values, params and tags, as dicts."""

    def __init__(self, metrics=None, params=None, tags=None):
        self._metric_objs = list(metrics or [])
        self._metrics = {m.key: m.value for m in self._metric_objs}
        self._params = {p.key: p.value for p in (params or [])}
        self._tags = {t.key: t.value for t in (tags or [])}

    metrics = property(lambda self: self._metrics)
    params = property(lambda self: self._params)
    tags = property(lambda self: self._tags)

    def to_dictionary(self):
        return {"metrics": self.metrics, "params": self.params, "tags": self.tags}


class RunInputs(_MlflowObject):
    """Datasets (``DatasetInput``) and logged models (``LoggedModelInput``) a run used."""

    def __init__(self, dataset_inputs=None, model_inputs=None):
        self._dataset_inputs = list(dataset_inputs or [])
        self._model_inputs = list(model_inputs or [])

    dataset_inputs = property(lambda self: self._dataset_inputs)
    model_inputs = property(lambda self: self._model_inputs)

    def to_dictionary(self):
        return {
            "model_inputs": self.model_inputs,
            "dataset_inputs": [d.to_dictionary() for d in self.dataset_inputs],
        }


class RunOutputs(_MlflowObject):
    """Logged models (``LoggedModelOutput``) a run produced."""

    def __init__(self, model_outputs=None):
        self._model_outputs = list(model_outputs or [])

    model_outputs = property(lambda self: self._model_outputs)

    def to_dictionary(self):
        return {"model_outputs": [m.to_dictionary() for m in self.model_outputs]}


class Run(_MlflowObject):
    """A run: its ``info`` and its ``data``."""

    def __init__(self, run_info, run_data, run_inputs=None, run_outputs=None):
        self._info = run_info
        self._data = run_data
        # None where the call that made the run does not read them, as MLflow's runs have.
        self._inputs = run_inputs
        self._outputs = run_outputs

    info = property(lambda self: self._info)
    data = property(lambda self: self._data)
    inputs = property(lambda self: self._inputs)
    outputs = property(lambda self: self._outputs)

    def to_dictionary(self):
        out = {"info": dict(self.info)}
        if self.data:
            out["data"] = self.data.to_dictionary()
        if self.inputs:
            out["inputs"] = self.inputs.to_dictionary()
        if self.outputs:
            out["outputs"] = self.outputs.to_dictionary()
        return out

    @classmethod
    def _from_row(cls, row):
        """A run from the tracker's row: (info, metrics, params, tags), and its inputs and
        outputs when the row has a fifth element."""
        info, metrics, params, tags = row[:4]
        data = RunData(
            [Metric(k, v, ts, step) for k, v, ts, step in metrics],
            [Param(k, v) for k, v in params],
            [RunTag(k, v) for k, v in tags],
        )
        if len(row) < 5:
            # A search result: MLflow's has empty inputs and outputs.
            return cls(RunInfo._from_row(info), data, RunInputs(), RunOutputs())
        datasets, model_inputs, model_outputs = row[4]
        inputs = RunInputs(
            [
                DatasetInput(Dataset(*dataset), [InputTag(k, v) for k, v in input_tags])
                for dataset, input_tags in datasets
            ],
            [LoggedModelInput(model_id) for model_id in model_inputs],
        )
        outputs = RunOutputs([LoggedModelOutput(m, step) for m, step in model_outputs])
        return cls(RunInfo._from_row(info), data, inputs, outputs)
