"""Scenarios: small scripts that run once under ``import mlflow`` and once under ``import
fastflow as mlflow``, and what they observe.

A scenario is a function ``(mlflow, call)``: ``mlflow`` is the module under test and ``call``
records each call's outcome (the value it returned, or the exception it raised, and the warnings
it gave). The store and the artifact tree the scenario leaves behind are compared as well, so
most scenarios only need to make the calls.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import re
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

SCENARIOS: dict[str, Scenario] = {}


@dataclass(frozen=True)
class Scenario:
    name: str
    run: Callable[..., None]
    # Environment variables set in the scenario's process before it runs.
    env: dict = field(default_factory=dict)
    # Starts without a store, so both tools create the database themselves.
    fresh_store: bool = False
    # Key of an entry of differences.ON_PURPOSE: the observable way fastflow differs here.
    differs: str | None = None
    # Takes one JSON argument from the harness (generated inputs).
    takes_input: bool = False


def scenario(fn=None, *, cases=None, env=None, fresh_store=False, differs=None, takes_input=False):
    """Registers ``fn`` as a scenario; with ``cases`` ({id: value} or a list), one scenario per
    case, each called as ``fn(mlflow, call, value)``."""

    def register(fn):
        options = dict(env=env or {}, fresh_store=fresh_store, differs=differs)
        if cases is None:
            _add(Scenario(fn.__name__, fn, takes_input=takes_input, **options))
            return fn
        items = cases.items() if isinstance(cases, dict) else ((_case_id(c), c) for c in cases)
        for case_id, value in items:
            name = f"{fn.__name__}[{case_id}]"
            _add(Scenario(name, functools.partial(_with_case, fn, value), **options))
        return fn

    return register(fn) if fn is not None else register


def _with_case(fn, value, mlflow, call):
    return fn(mlflow, call, value)


def _add(found: Scenario) -> None:
    if found.name in SCENARIOS:
        raise ValueError(f"two scenarios are named {found.name}")
    SCENARIOS[found.name] = found


def _case_id(value) -> str:
    text = (value or "empty") if isinstance(value, str) else repr(value)
    return re.sub(r"[^\w.+-]+", "_", text)[:60]


class Recorder:
    """``call(fn, *args, **kwargs)`` runs ``fn`` and records what a user could observe."""

    def __init__(self, save: Callable[[list], None] | None = None):
        self.observations: list[dict] = []
        # Writes the observations where the harness reads them (the worker's own choice).
        self.save = save

    def __call__(self, fn, *args, **kwargs):
        label = getattr(fn, "__qualname__", None) or type(fn).__name__
        entry: dict[str, Any] = {"call": label}
        with _Warnings() as caught:
            try:
                result = fn(*args, **kwargs)
            except Exception as error:  # every exception is an observation
                entry["raised"] = describe_exception(error)
                result = None
            else:
                entry["returned"] = plain(result)
        if caught.messages:
            entry["warnings"] = caught.messages
        self.observations.append(entry)
        return result

    def exit_right_after(self, fn, *args, **kwargs) -> None:
        """Calls ``fn`` and ends the process the moment it returns, as a kill then would:
        no atexit handlers, no flushing. What was observed so far is saved before the call
        (its own outcome is not recorded)."""
        self.observations.append({"call then exit": getattr(fn, "__qualname__", repr(fn))})
        if self.save is not None:
            self.save(self.observations)
        try:
            fn(*args, **kwargs)
        finally:
            os._exit(0)

    def note(self, label: str, value) -> None:
        """Records a value the scenario computed (a read of the store, a file's text)."""
        self.observations.append({"note": label, "value": plain(value)})


def describe_exception(error: BaseException) -> dict:
    described = {"type": type(error).__name__, "message": str(error)}
    code = getattr(error, "error_code", None)
    if code is not None:
        described["error_code"] = code
    return described


class _Warnings(logging.Handler):
    """Collects Python warnings and logged warnings of one call: MLflow reports truncated
    values through its logger, other conditions through ``warnings``."""

    def __init__(self):
        super().__init__(level=logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record):
        self.messages.append(record.getMessage())

    def __enter__(self):
        self._catch = warnings.catch_warnings(record=True)
        self._caught = self._catch.__enter__()
        warnings.simplefilter("always")
        logging.getLogger().addHandler(self)
        return self

    def __exit__(self, *exc):
        logging.getLogger().removeHandler(self)
        self._catch.__exit__(*exc)
        self.messages.extend(
            str(w.message)
            for w in self._caught
            if not issubclass(w.category, (DeprecationWarning, PendingDeprecationWarning))
        )
        return False


def plain(value, depth=0):
    """A JSON value for anything a call returns, keeping the type names a user would see."""
    if depth > 8:
        return {"type": type(value).__name__}
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int) and type(value) is int:
        return value
    if isinstance(value, float) and type(value) is float:
        return value if math.isfinite(value) else {"float": repr(value)}
    if isinstance(value, bytes):
        return {"bytes": value.hex()}
    if isinstance(value, (list, tuple)):
        items = [plain(v, depth + 1) for v in value]
        return items if isinstance(value, list) else {"tuple": items}
    if isinstance(value, dict):
        return {"dict": [[plain(k, depth + 1), plain(v, depth + 1)] for k, v in value.items()]}
    kind = type(value)
    module = kind.__module__ or ""
    if module.startswith("fastflow") and kind.__name__ == "MetricHistory":
        return {"MetricHistory": [plain(v, depth + 1) for v in value]}
    if module.startswith("pandas") and kind.__name__ == "DataFrame":
        return {
            "DataFrame": {
                "columns": [str(c) for c in value.columns],
                "dtypes": [str(d) for d in value.dtypes],
                "rows": [plain(list(row), depth + 1) for row in value.itertuples(index=False)],
            }
        }
    if module.startswith("pandas") and kind.__name__ == "Timestamp":
        return {"Timestamp": value.value // 1_000_000}
    if module.startswith("numpy"):
        if hasattr(value, "tolist"):
            return {kind.__name__: plain(value.tolist(), depth + 1)}
    if kind.__name__ in ("NaTType",):
        return {"NaT": None}
    if kind.__name__ == "ActiveRun":
        # Iterating MLflow's ActiveRun gives nothing: its run is compared field by field.
        fields = ("info", "data", "inputs", "outputs")
        return {
            "ActiveRun": [[k, plain(v, depth + 1)] for k, v in value],
            "run": [[f, plain(getattr(value, f, None), depth + 1)] for f in fields],
        }
    if hasattr(type(value), "_properties") and hasattr(value, "__iter__"):
        return {kind.__name__: [[k, plain(v, depth + 1)] for k, v in value]}
    if hasattr(value, "to_list") and kind.__name__ == "PagedList":
        return {"PagedList": plain(list(value), depth + 1), "token": value.token}
    return {"type": kind.__name__}
