"""MLflow's tracking entities, with MLflow's names and attributes."""

from fastflow.entities.experiment import Experiment
from fastflow.entities.file_info import FileInfo
from fastflow.entities.metric import ExperimentTag, Metric, Param, RunTag
from fastflow.entities.run import Run, RunData, RunInfo, RunInputs, RunOutputs
from fastflow.entities.status import LifecycleStage, RunStatus, ViewType

__all__ = [
    "Experiment",
    "ExperimentTag",
    "FileInfo",
    "LifecycleStage",
    "Metric",
    "Param",
    "Run",
    "RunData",
    "RunInfo",
    "RunInputs",
    "RunOutputs",
    "RunStatus",
    "RunTag",
    "ViewType",
]
