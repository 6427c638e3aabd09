from __future__ import annotations

from fastflow.exceptions import MlflowException


class RunStatus:
    """Enum for the status of a run, with MLflow's numbering."""

    RUNNING = 1
    SCHEDULED = 2
    FINISHED = 3
    FAILED = 4
    KILLED = 5

    _STRING_TO_STATUS = {
        "RUNNING": RUNNING,
        "SCHEDULED": SCHEDULED,
        "FINISHED": FINISHED,
        "FAILED": FAILED,
        "KILLED": KILLED,
    }
    _STATUS_TO_STRING = {v: k for k, v in _STRING_TO_STATUS.items()}
    _TERMINATED_STATUSES = {FINISHED, FAILED, KILLED}

    @staticmethod
    def from_string(status_str):
        if status_str not in RunStatus._STRING_TO_STATUS:
            raise Exception(
                f"Could not get run status corresponding to string {status_str}. Valid run "
                f"status strings: {list(RunStatus._STRING_TO_STATUS.keys())}"
            )
        return RunStatus._STRING_TO_STATUS[status_str]

    @staticmethod
    def to_string(status):
        if status not in RunStatus._STATUS_TO_STRING:
            raise Exception(f"Could not get string corresponding to run status {status}")
        return RunStatus._STATUS_TO_STRING[status]

    @staticmethod
    def is_terminated(status):
        return status in RunStatus._TERMINATED_STATUSES

    @staticmethod
    def all_status():
        return list(RunStatus._STATUS_TO_STRING.keys())


class ViewType:
    """Which runs or experiments a listing returns, by lifecycle stage."""

    ACTIVE_ONLY, DELETED_ONLY, ALL = 1, 2, 3
    _VIEW_TO_STRING = {ACTIVE_ONLY: "active_only", DELETED_ONLY: "deleted_only", ALL: "all"}
    _STRING_TO_VIEW = {v: k for k, v in _VIEW_TO_STRING.items()}

    @classmethod
    def from_string(cls, view_str):
        if view_str not in cls._STRING_TO_VIEW:
            raise MlflowException(
                f"Could not get valid view type corresponding to string {view_str}. "
                f"Valid view types are {list(cls._STRING_TO_VIEW)}"
            )
        return cls._STRING_TO_VIEW[view_str]

    @classmethod
    def to_string(cls, view_type):
        if view_type not in cls._VIEW_TO_STRING:
            raise MlflowException(
                f"Could not get valid view type corresponding to string {view_type}. "
                f"Valid view types are {list(cls._VIEW_TO_STRING)}"
            )
        return cls._VIEW_TO_STRING[view_type]


class LifecycleStage:
    ACTIVE = "active"
    DELETED = "deleted"
    _VALID_STAGES = {ACTIVE, DELETED}

    @classmethod
    def view_type_to_stages(cls, view_type=ViewType.ALL):
        stages = []
        if view_type in (ViewType.ACTIVE_ONLY, ViewType.ALL):
            stages.append(cls.ACTIVE)
        if view_type in (ViewType.DELETED_ONLY, ViewType.ALL):
            stages.append(cls.DELETED)
        return stages

    @classmethod
    def is_valid(cls, lifecycle_stage):
        return lifecycle_stage in cls._VALID_STAGES
