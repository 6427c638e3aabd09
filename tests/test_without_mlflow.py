"""fastflow without MLflow: a real virtual environment in which MLflow cannot be imported.

fastflow has no required dependencies; MLflow is the optional extra ``fastflow[mlflow]``. In
an environment without it, ``import fastflow`` must work, log runs MLflow reads, cost what it
costs beside MLflow (nothing heavy is imported), and every name only MLflow has must say which
extra to install instead of failing obscurely.

The environment is ``python -m venv`` without system site packages; the fastflow package this
test process imports (its Python files and the built extension) is copied into a directory
that a ``.pth`` file puts on that environment's path.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import textwrap
from pathlib import Path

import fastflow
import pytest

EXTRA = "fastflow[mlflow]"
IMPORT_RUNS = 10
# A functional check that nothing heavy is imported, not a benchmark: generous bounds.
MAX_IMPORT_FACTOR = 1.5
IMPORT_SLACK_S = 0.020

IMPORT_TIME = (
    "import time\nt = time.perf_counter()\nimport fastflow\nprint(time.perf_counter() - t)\n"
)


def _env() -> dict:
    # Nothing of this process's configuration may leak into the children.
    drop = ("MLFLOW_", "FASTFLOW_", "PYTHON")
    return {k: v for k, v in os.environ.items() if not k.startswith(drop)}


def _run(python: str, code: str, cwd: Path, timeout: float = 300) -> str:
    done = subprocess.run(
        [python, "-c", textwrap.dedent(code)],
        cwd=cwd,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, (
        f"{python} exited with {done.returncode}\n--- stdout\n{done.stdout[-3000:]}\n"
        f"--- stderr\n{done.stderr[-3000:]}"
    )
    return done.stdout


@pytest.fixture(scope="module")
def bare(tmp_path_factory) -> str:
    """The Python of a fresh venv that has fastflow and no MLflow (nor anything else)."""
    root = tmp_path_factory.mktemp("without-mlflow")
    venv = root / "venv"
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(venv)],
        check=True,
        env=_env(),
        timeout=300,
    )
    python = str(venv / "bin" / "python")
    site = _run(python, "import sysconfig; print(sysconfig.get_paths()['purelib'])", root)
    # The fastflow package this process imports, extension module included.
    package = Path(fastflow.__file__).resolve().parent
    shutil.copytree(
        package, root / "lib" / "fastflow", ignore=shutil.ignore_patterns("__pycache__")
    )
    Path(site.strip(), "fastflow_under_test.pth").write_text(str(root / "lib") + "\n")
    where = _run(
        python,
        """
        import importlib.util, sys
        assert importlib.util.find_spec("mlflow") is None, "MLflow is importable in the venv"
        assert not sys.flags.no_site
        import fastflow
        print(fastflow.__file__)
        """,
        root,
    )
    assert where.strip().startswith(str(root / "lib")), where
    return python


@pytest.fixture
def workdir(tmp_path) -> Path:
    return tmp_path


def test_logs_a_run_mlflow_reads(bare, workdir):
    store = workdir / "store.db"
    uri = f"sqlite:///{store}"
    out = _run(
        bare,
        f"""
        import json, sys
        import fastflow
        assert "mlflow" not in sys.modules
        fastflow.set_tracking_uri({uri!r})
        fastflow.set_experiment("without-mlflow")
        with fastflow.start_run(run_name="bare", tags={{"team": "core"}}) as run:
            fastflow.log_params({{"lr": 0.1, "layers": 3}})
            fastflow.set_tag("stage", "test")
            for step in range(5):
                fastflow.log_metric("loss", 1.0 / (step + 1), step=step)
            fastflow.log_metrics({{"acc": 0.9, "f1": 0.8}}, step=4)
        assert "mlflow" not in sys.modules
        print(json.dumps({{"run_id": run.info.run_id}}))
        """,
        workdir,
    )
    run_id = json.loads(out.strip().splitlines()[-1])["run_id"]
    # Read back by MLflow alone, in a process that never imports fastflow.
    read = _run(
        sys.executable,
        f"""
        import json, sys
        import mlflow
        client = mlflow.MlflowClient({uri!r})
        run = client.get_run({run_id!r})
        assert "fastflow" not in sys.modules
        print(json.dumps({{
            "status": run.info.status,
            "name": run.info.run_name,
            "experiment": client.get_experiment(run.info.experiment_id).name,
            "params": run.data.params,
            "tags": {{k: v for k, v in run.data.tags.items() if not k.startswith("mlflow.")}},
            "loss": [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, "loss")],
            "metrics": run.data.metrics,
        }}))
        """,
        workdir,
    )
    got = json.loads(read.strip().splitlines()[-1])
    assert got["status"] == "FINISHED"
    assert got["name"] == "bare"
    assert got["experiment"] == "without-mlflow"
    assert got["params"] == {"lr": "0.1", "layers": "3"}
    assert got["tags"] == {"team": "core", "stage": "test"}
    assert sorted(tuple(p) for p in got["loss"]) == [(s, 1.0 / (s + 1)) for s in range(5)]
    assert got["metrics"] == {"loss": 0.2, "acc": 0.9, "f1": 0.8}


def _startup_modules(cwd: Path) -> list:
    """What this environment's interpreter has imported before the first line of a script
    (its site hooks may load much of the standard library)."""
    out = _run(
        sys.executable, "import json, sys; print(json.dumps(sorted(sys.modules)))", Path(".")
    )
    return [m for m in json.loads(out) if not m.startswith(("fastflow", "__main__"))]


def _import_time_code(preload: list) -> str:
    # Both environments start from the same modules, so that the figure is fastflow's own
    # import: the other environment's site may have loaded half the standard library.
    return (
        f"import importlib\nfor name in {preload!r}:\n"
        "    try:\n        importlib.import_module(name)\n"
        "    except Exception:\n        pass\n" + IMPORT_TIME
    )


def test_import_time_is_unchanged_without_mlflow(bare, workdir):
    code = _import_time_code(_startup_modules(workdir))
    # One discarded run each, so that neither environment pays for a cold page cache; then
    # alternating, so that the machine's noise falls on both alike.
    _run(sys.executable, code, workdir)
    _run(bare, code, workdir)
    main, without = [], []
    for _ in range(IMPORT_RUNS):
        main.append(float(_run(sys.executable, code, workdir).split()[-1]))
        without.append(float(_run(bare, code, workdir).split()[-1]))
    main_s, without_s = statistics.median(main), statistics.median(without)
    figures = (
        f"import fastflow, median of {IMPORT_RUNS} fresh processes: {main_s * 1e3:.1f} ms with "
        f"MLflow installed, {without_s * 1e3:.1f} ms without"
    )
    print(figures)
    assert without_s <= MAX_IMPORT_FACTOR * main_s + IMPORT_SLACK_S, figures


def test_import_loads_nothing_only_the_bridge_needs(bare, workdir):
    out = _run(
        bare,
        """
        import sys
        before = set(sys.modules)
        import fastflow
        print(" ".join(sorted(set(sys.modules) - before)))
        """,
        workdir,
    )
    loaded = set(out.split())
    assert not loaded & {"importlib.abc", "importlib.resources", "typing", "pathlib"}, loaded


def test_import_fastflow_does_not_import_mlflow(workdir):
    # In this (the main) environment, where MLflow is installed.
    out = _run(
        sys.executable,
        """
        import importlib.util, sys
        assert importlib.util.find_spec("mlflow") is not None
        import fastflow
        fastflow.set_tracking_uri("sqlite:///store.db")
        with fastflow.start_run():
            fastflow.log_metric("loss", 0.5)
        print(sorted(m for m in ("mlflow", "ray", "pandas", "numpy") if m in sys.modules))
        """,
        workdir,
    )
    assert out.strip().splitlines()[-1] == "[]", out


@pytest.mark.parametrize(
    "expression",
    [
        "fastflow.sklearn",
        "fastflow.register_model",
        "fastflow.pyfunc.load_model",
        "fastflow.MlflowClient().transition_model_version_stage",
        "fastflow.MlflowClient().set_registered_model_alias",
    ],
)
def test_names_only_mlflow_has_name_the_extra(bare, workdir, expression):
    out = _run(
        bare,
        f"""
        import json, sys
        import fastflow
        try:
            {expression}
        except AttributeError as e:
            print(json.dumps({{"error": str(e)}}))
        else:
            print(json.dumps({{"error": None}}))
        print(json.dumps({{"mlflow": "mlflow" in sys.modules}}))
        """,
        workdir,
    )
    lines = [json.loads(line) for line in out.strip().splitlines()[-2:]]
    message = lines[0]["error"]
    assert message is not None, f"{expression} raised no AttributeError without MLflow"
    assert EXTRA in message, f"{expression}: {message!r} does not name {EXTRA}"
    assert lines[1] == {"mlflow": False}


def test_hasattr_is_false_without_mlflow(bare, workdir):
    out = _run(
        bare,
        """
        import fastflow
        print(hasattr(fastflow, "sklearn"), hasattr(fastflow, "log_metric"))
        """,
        workdir,
    )
    assert out.split() == ["False", "True"]


def test_system_metrics_need_neither_mlflow_nor_psutil(bare, workdir):
    out = _run(
        bare,
        """
        import json, os, sys, time
        os.environ["MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL"] = "0.2"
        import fastflow
        fastflow.set_tracking_uri("sqlite:///store.db")
        with fastflow.start_run(log_system_metrics=True) as run:
            time.sleep(1.0)
        metrics = fastflow.get_run(run.info.run_id).data.metrics
        print(json.dumps({
            "keys": sorted(k for k in metrics if k.startswith("system/")),
            "active": fastflow.active_run() is not None,
            "mlflow": "mlflow" in sys.modules,
            "psutil": "psutil" in sys.modules,
        }))
        """,
        workdir,
    )
    seen = json.loads(out.strip().splitlines()[-1])
    assert "system/cpu_utilization_percentage" in seen["keys"], seen
    assert "system/system_memory_usage_megabytes" in seen["keys"], seen
    assert not seen["active"] and not seen["mlflow"] and not seen["psutil"], seen


def test_an_artifact_location_only_mlflow_serves_names_the_extra(bare, workdir):
    out = _run(
        bare,
        """
        import json, sys
        import fastflow
        fastflow.set_tracking_uri("sqlite:///store.db")
        experiment = fastflow.create_experiment("s3", artifact_location="s3://bucket/prefix")
        with fastflow.start_run(experiment_id=experiment) as run:
            fastflow.log_metric("kept", 1.0)
            try:
                fastflow.log_text("hello", "notes.txt")
            except fastflow.MlflowException as e:
                print(json.dumps({"error": e.message, "code": e.error_code}))
        metrics = fastflow.get_run(run.info.run_id).data.metrics
        print(json.dumps({"metrics": metrics, "mlflow": "mlflow" in sys.modules}))
        """,
        workdir,
    )
    refused, after = (json.loads(line) for line in out.strip().splitlines()[-2:])
    assert EXTRA in refused["error"] and "s3://bucket/prefix" in refused["error"], refused
    assert refused["code"] == "INVALID_PARAMETER_VALUE"
    assert after == {"metrics": {"kept": 1.0}, "mlflow": False}
