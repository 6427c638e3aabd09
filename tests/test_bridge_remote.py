"""MLflow's own features on fastflow's runs through a real `mlflow server` (REST, proxied
artifacts): a sklearn model logged and registered via `fastflow.sklearn`, loaded back from
`runs:/`, a pandas dataset as input, sklearn autologging outside and inside a run. The same
script runs once after `import fastflow as mlflow` and once with MLflow alone, each in a
fresh interpreter, against the same server; real MLflow's client reads both back."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from remote_server import MlflowServer

# MLflow's telemetry thread, failing to reach its server here, removes an environment variable
# while `requests` iterates os.environ for proxies: a REST call then fails with KeyError
# '_MLFLOW_TELEMETRY_SESSION_ID' (MLflow's race, with or without fastflow). Off in this
# process if MLflow is not loaded yet, and in the scripts.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

SCRIPT = r"""
import json, sys

variant, uri = sys.argv[1], sys.argv[2]
if variant == "fastflow":
    import fastflow as mlflow

    assert "mlflow" not in sys.modules, "import fastflow imported MLflow"
else:
    import mlflow

from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

mlflow.set_tracking_uri(uri)
mlflow.set_experiment(f"bridge-{variant}")
X, y = load_iris(return_X_y=True, as_frame=True)
out = {}
with mlflow.start_run(run_name="train", tags={"team": "ml"}) as run:
    mlflow.log_params({"C": 0.5, "max_iter": 200})
    for step in range(3):
        mlflow.log_metric("loss", 1.0 / (step + 1), step=step)
    model = LogisticRegression(C=0.5, max_iter=200).fit(X, y)
    mlflow.log_metric("accuracy", float(model.score(X, y)))
    info = mlflow.sklearn.log_model(
        model,
        name="model",
        registered_model_name=f"iris-{variant}",
        input_example=X.head(3),
        pip_requirements=["scikit-learn"],  # inferring them takes a subprocess, seconds
    )
    dataset = mlflow.data.from_pandas(X.assign(target=y), name="iris", targets="target")
    mlflow.log_input(dataset, context="train")
    out["train"] = run.info.run_id
    out["model_id"] = info.model_id
    out["model_run_id"] = info.run_id

loaded = mlflow.pyfunc.load_model(f"runs:/{out['train']}/model")
out["predictions_match"] = list(loaded.predict(X.head(20))) == list(model.predict(X.head(20)))

mlflow.sklearn.autolog()
LogisticRegression(max_iter=300).fit(X, y)  # autologging starts and ends a run, logs a model
out["autolog_outside"] = mlflow.last_active_run().info.run_id
mlflow.sklearn.autolog(log_models=False)
with mlflow.start_run(run_name="autolog-inside") as inside:
    LogisticRegression(C=2.0, max_iter=300).fit(X, y)
out["autolog_inside"] = inside.info.run_id
mlflow.sklearn.autolog(disable=True)

# Hugging Face's callback inside the script's run: params in chunks, metrics per log.
from transformers import TrainerControl, TrainerState, TrainingArguments
from transformers.integrations import MLflowCallback

args = TrainingArguments(output_dir="out", run_name="hf", learning_rate=3e-4, report_to=[])
state, control = TrainerState(), TrainerControl()
with mlflow.start_run(run_name="hf") as hf_run:
    callback = MLflowCallback()
    callback.on_train_begin(args, state, control)
    for step in (5, 10):
        state.global_step = step
        callback.on_log(args, state, control, logs={"loss": 1.0 / step, "epoch": step / 10})
    callback.on_train_end(args, state, control)
out["hf"] = hf_run.info.run_id
out["active_after"] = mlflow.active_run() is not None
if variant == "fastflow":
    out["bridge"] = sys.modules["fastflow._bridge"].installed()
print("RESULT " + json.dumps(out))
"""

ROLES = ("train", "autolog_outside", "autolog_inside", "hf")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    running = MlflowServer(tmp_path_factory.mktemp("bridge-server"), serve_artifacts=True).start()
    yield running
    running.stop()


def _environment(spool):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "FASTFLOW_"))}
    env["FASTFLOW_SPOOL_DIR"] = str(spool)
    env["MLFLOW_DISABLE_TELEMETRY"] = "true"
    return env


@pytest.fixture(scope="module")
def results(server, tmp_path_factory):
    """Both variants at once against the server: {variant: what the script printed}."""
    directory = tmp_path_factory.mktemp("bridge-remote")
    script = directory / "scenario.py"
    script.write_text(SCRIPT)
    started = {}
    for variant in ("fastflow", "mlflow"):
        home = directory / variant
        home.mkdir()
        started[variant] = subprocess.Popen(
            [sys.executable, str(script), variant, server.uri],
            cwd=home,
            env=_environment(home / "spool"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
    deadline = time.monotonic() + 400
    out = {}
    try:
        for variant, process in started.items():
            stdout, stderr = process.communicate(timeout=max(1.0, deadline - time.monotonic()))
            assert process.returncode == 0, f"{variant} variant failed:\n{stderr[-6000:]}"
            line = [x for x in stdout.splitlines() if x.startswith("RESULT ")][-1]
            out[variant] = json.loads(line[len("RESULT ") :])
    finally:
        for process in started.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
    return out


@pytest.fixture(scope="module")
def oracle(server, mlflow):
    return mlflow.MlflowClient(tracking_uri=server.uri, registry_uri=server.uri)


def _experiment_id(oracle, variant):
    return oracle.get_experiment_by_name(f"bridge-{variant}").experiment_id


def test_model_dataset_and_registry_on_the_fastflow_run(results, oracle):
    got = results["fastflow"]
    assert got["bridge"] is True
    assert got["predictions_match"] is True
    assert got["active_after"] is False
    run_id = got["train"]
    assert got["model_run_id"] == run_id

    # The logged model points at fastflow's run, and the metrics logged just before
    # log_model are linked to it.
    model = oracle.get_logged_model(got["model_id"])
    assert model.source_run_id == run_id
    assert model.status == "READY"
    linked = {(m.key, m.step): m for m in model.metrics}
    assert linked[("accuracy", 0)].value > 0.9
    assert linked[("loss", 0)].value == 1.0
    assert all(m.run_id == run_id and m.model_id == got["model_id"] for m in model.metrics)

    run = oracle.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params == {"C": "0.5", "max_iter": "200"}
    assert run.data.tags["team"] == "ml"
    assert [o.model_id for o in run.outputs.model_outputs] == [got["model_id"]]
    inputs = run.inputs.dataset_inputs
    assert [i.dataset.name for i in inputs] == ["iris"]
    assert {(t.key, t.value) for t in inputs[0].tags} == {("mlflow.data.context", "train")}
    assert sorted((m.step, m.value) for m in oracle.get_metric_history(run_id, "loss")) == [
        (0, 1.0),
        (1, 0.5),
        (2, 1.0 / 3),
    ]

    version = oracle.get_model_version("iris-fastflow", "1")
    assert version.run_id == run_id
    assert version.source == f"models:/{got['model_id']}"
    assert version.status == "READY"


def test_autologging_runs_end_and_carry_the_model(results, oracle):
    got = results["fastflow"]
    outside = oracle.get_run(got["autolog_outside"])
    assert outside.info.status == "FINISHED"
    assert outside.data.tags["mlflow.autologging"] == "sklearn"
    assert outside.data.params["max_iter"] == "300"
    assert outside.data.metrics["training_accuracy_score"] > 0.9
    [output] = outside.outputs.model_outputs
    model = oracle.get_logged_model(output.model_id)
    assert model.source_run_id == outside.info.run_id
    assert {m.key for m in model.metrics} >= {"training_accuracy_score", "training_log_loss"}
    inside = oracle.get_run(got["autolog_inside"])
    assert inside.info.run_name == "autolog-inside"
    assert inside.info.status == "FINISHED"
    assert inside.data.params["C"] == "2.0"
    assert inside.data.metrics["training_accuracy_score"] > 0.9
    # Nothing left RUNNING, no run besides the script's.
    experiment = _experiment_id(oracle, "fastflow")
    assert oracle.search_runs([experiment], "attributes.status = 'RUNNING'") == []
    assert sorted(r.info.run_id for r in oracle.search_runs([experiment])) == sorted(
        got[role] for role in ROLES
    )


def test_hf_callback_logs_into_the_fastflow_run_on_the_server(results, oracle):
    run_id = results["fastflow"]["hf"]
    run = oracle.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["learning_rate"] == "0.0003"
    assert len(run.data.params) > 50
    history = oracle.get_metric_history(run_id, "loss")
    assert sorted((m.step, m.value) for m in history) == [(5, 0.2), (10, 0.1)]


def _snapshot(oracle, variant, ids):
    roles = {ids[role]: role for role in ROLES}
    experiment = _experiment_id(oracle, variant)
    runs = {}
    for run in oracle.search_runs([experiment]):
        role = roles[run.info.run_id]
        runs[role] = {
            "status": run.info.status,
            "params": run.data.params,
            "tags": {
                k: v
                for k, v in run.data.tags.items()
                if not k.startswith("mlflow.source.") and k not in ("mlflow.user", "mlflow.runName")
            },
            "metrics": {
                k: sorted((m.step, m.value) for m in oracle.get_metric_history(run.info.run_id, k))
                for k in run.data.metrics
            },
            "inputs": sorted(
                (i.dataset.name, i.dataset.digest, tuple(sorted((t.key, t.value) for t in i.tags)))
                for i in run.inputs.dataset_inputs
            ),
            "outputs": len(run.outputs.model_outputs),
        }
    models = sorted(
        (
            roles[m.source_run_id],
            m.name,
            m.status,
            sorted(m.params.items()),
            sorted((x.key, x.value, x.step) for x in m.metrics),
        )
        for m in oracle.search_logged_models(experiment_ids=[experiment])
    )
    versions = [
        (v.version, roles[v.run_id], v.status)
        for v in oracle.search_model_versions(f"name='iris-{variant}'")
    ]
    return runs, models, versions


def test_same_runs_models_and_versions_as_mlflow(results, oracle):
    got = _snapshot(oracle, "fastflow", results["fastflow"])
    expected = _snapshot(oracle, "mlflow", results["mlflow"])
    assert results["mlflow"]["predictions_match"] is True
    runs, models, versions = expected
    assert sorted(runs) == sorted(ROLES) and len(models) == 2 and len(versions) == 1
    for role in ROLES:
        assert got[0][role] == runs[role], role
    assert got[1] == models
    assert got[2] == versions
