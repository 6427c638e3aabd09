"""MLflow's tracking entities, with MLflow's names and attributes."""

from fastflow.entities.dataset import Dataset, DatasetInput, InputTag
from fastflow.entities.experiment import Experiment
from fastflow.entities.file_info import FileInfo
from fastflow.entities.logged_model import LoggedModelInput, LoggedModelOutput
from fastflow.entities.metric import ExperimentTag, Metric, Param, RunTag
from fastflow.entities.metric_history import MetricHistory
from fastflow.entities.run import Run, RunData, RunInfo, RunInputs, RunOutputs
from fastflow.entities.status import LifecycleStage, RunStatus, ViewType

__all__ = [
    "Dataset",
    "DatasetInput",
    "Experiment",
    "ExperimentTag",
    "FileInfo",
    "InputTag",
    "LifecycleStage",
    "LoggedModelInput",
    "LoggedModelOutput",
    "Metric",
    "MetricHistory",
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
