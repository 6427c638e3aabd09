"""Messages MLflow logs (not warns) go out through MLflow's own loggers, so whoever silences
or routes MLflow's logging routes fastflow's too, and the text lands where MLflow's does."""

from __future__ import annotations

import logging
import os
import sys


class _Stderr:
    """Whatever ``sys.stderr`` is at the time of writing (a test may replace it)."""

    def write(self, text):
        return sys.stderr.write(text)

    def flush(self):
        sys.stderr.flush()


def mlflow_logger(name):
    """The logger MLflow's module ``name`` uses. MLflow gives its root logger one stderr
    handler and stops it from propagating; where MLflow has not (it is not imported), the
    same is done here, and MLflow's import later replaces it."""
    root = logging.getLogger("mlflow")
    if not root.handlers:
        handler = logging.StreamHandler(_Stderr())
        handler.setFormatter(
            logging.Formatter(
                "%(asctime)s %(levelname)s %(name)s: %(message)s", "%Y/%m/%d %H:%M:%S"
            )
        )
        root.handlers = [handler]
        root.setLevel((os.environ.get("MLFLOW_LOGGING_LEVEL") or "INFO").upper())
        root.propagate = False
    return logging.getLogger(name)
