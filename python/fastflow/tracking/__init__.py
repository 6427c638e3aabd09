"""MLflow's ``mlflow.tracking`` import path."""

from fastflow.tracking.client import MlflowClient

__all__ = ["MlflowClient"]
