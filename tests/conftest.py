import os
import sqlite3
import subprocess
import sys

import fastflow
import pytest
from fastflow import _bridge, _context, fluent

# The oracle is pure MLflow: in the test processes MLflow keeps its own state and stores.
# Tests of the bridge run their scenarios in subprocesses, where it is on as for users.
_bridge.turn_off()

_ENV = (
    "MLFLOW_TRACKING_URI",
    "MLFLOW_EXPERIMENT_NAME",
    "MLFLOW_EXPERIMENT_ID",
    "MLFLOW_RUN_ID",
    "MLFLOW_TRUNCATE_LONG_VALUES",
    "FASTFLOW_RAY_FUNNEL",
    "FASTFLOW_RAY_CONTEXT",
    "MLFLOW_TRACKING_USERNAME",
    "MLFLOW_TRACKING_PASSWORD",
    "MLFLOW_TRACKING_TOKEN",
)


@pytest.fixture(autouse=True)
def clean_fluent_state(monkeypatch, tmp_path):
    """Every test starts with no active run, no active experiment and its own directory."""
    for name in _ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    # Journals of this test's processes stay with it (they are removed at a clean exit).
    monkeypatch.setenv("FASTFLOW_SPOOL_DIR", str(tmp_path / "spool"))
    yield
    while fastflow.active_run() is not None:
        fastflow.end_run()
    fluent._active_experiment_id = None
    _context._reset_tracking_uri()
    remove_large_files(tmp_path)


def remove_large_files(root, at_least=64 << 20):
    """Gibibyte files of streaming tests go as soon as their test ends, passed or not:
    kept, a few of them fill a CI runner's disk and every later test fails to start."""
    for directory, _, names in os.walk(root):
        for name in names:
            path = os.path.join(directory, name)
            try:
                if os.lstat(path).st_size >= at_least:
                    os.remove(path)
            except OSError:
                pass


@pytest.fixture
def db_uri(tmp_path):
    """A fresh store for fastflow, set as the tracking URI."""
    uri = f"sqlite:///{tmp_path / 'fastflow.db'}"
    fastflow.set_tracking_uri(uri)
    return uri


@pytest.fixture(scope="session")
def mlflow():
    import mlflow

    return mlflow


@pytest.fixture
def mlflow_bridge(mlflow):
    """The bridge on in this process for one test; MLflow gets its own state back after."""
    _bridge.turn_on()
    _bridge.install()
    yield mlflow
    _bridge.uninstall()
    _bridge.turn_off()


@pytest.fixture
def artifact_sources(tmp_path):
    """A 3 MiB file and a directory with a nested one, names with a space and a plus."""
    model = tmp_path / "model.bin"
    model.write_bytes(os.urandom(3 << 20))
    reports = tmp_path / "reports"
    (reports / "nested deeper").mkdir(parents=True)
    (reports / "summary.md").write_text("# ok\n")
    (reports / "nested deeper" / "data+1.csv").write_text("a,b\n1,2\n")
    return model, reports


def file_tree(root):
    """Every file below ``root``, as {relative path: bytes}."""
    out = {}
    for base, _, files in os.walk(root):
        for name in files:
            path = os.path.join(base, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, root)] = f.read()
    return out


def run_python(code, *args, timeout=600):
    """Runs ``code`` in a fresh interpreter (for figures of a process of its own: peak
    memory, signals) and returns the words it printed."""
    done = subprocess.run(
        [sys.executable, "-c", code, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def sqlite_rows(path, sql, params=()):
    with sqlite3.connect(path) as conn:
        return conn.execute(sql, params).fetchall()


@pytest.fixture(scope="session")
def ray_cluster():
    """One local Ray instance for every Ray test: starting one takes seconds."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def pytest_configure(config):
    # Each process that runs part of the differential harness (xdist workers included) leaves
    # its outcomes in this directory; the process that prints the summary adds them up.
    if "FASTFLOW_DIFFERENTIAL_REPORT" not in os.environ:
        os.environ["FASTFLOW_DIFFERENTIAL_REPORT"] = os.path.join(
            str(config.rootpath), ".pytest_cache", f"differential-{os.getpid()}"
        )


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    directory = os.environ.get("FASTFLOW_DIFFERENTIAL_REPORT")
    if not directory or not os.path.isdir(directory) or hasattr(config, "workerinput"):
        return
    import collections
    import json
    import shutil

    outcomes = {}
    for name in sorted(os.listdir(directory)):
        with open(os.path.join(directory, name)) as f:
            outcomes.update(json.load(f))
    shutil.rmtree(directory, ignore_errors=True)
    if not outcomes:
        return
    counts = collections.Counter(outcomes.values())
    on_purpose = {k: v for k, v in counts.items() if k.startswith("on purpose")}
    terminalreporter.section("differential harness against MLflow")
    terminalreporter.write_line(
        f"{len(outcomes)} scenarios: {counts['agree']} agree with MLflow, "
        f"{sum(on_purpose.values())} differ on purpose, {counts['differ']} differ unexplained, "
        f"{counts['still open']} differ and are listed as still open"
    )
    for label, count in sorted(on_purpose.items()):
        terminalreporter.write_line(f"  {label}: {count}")
