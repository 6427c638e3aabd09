"""MLflow's models, registry and datasets on fastflow's runs: the seeds' patterns after
``import fastflow as mlflow``, each also run with ``import mlflow`` in a fresh interpreter of
its own, and the two SQLite stores compared table by table (``bridge_compare`` says what is
normalised: ids, times, the run's directory and random run names, nothing else)."""

import json
import subprocess
import sys

import bridge_compare as bc
import pytest

# sklearn's log_model as the seeds write it (requirements inferred as MLflow does); a pyfunc
# PythonModel (torch is not installed), with its requirements given to spare a second
# inference. One metric before log_model (linked to the model by MLflow), one after it at
# the same step (MLflow links that too) and one at the next step (linked to nothing).
MODELS = """
import json
import warnings

import numpy as np
import pandas as pd
from sklearn.linear_model import LinearRegression


def described(run):
    inputs = run.inputs.dataset_inputs if run.inputs else []
    outputs = run.outputs.model_outputs if run.outputs else []
    return {
        "datasets": sorted(
            [
                d.dataset.name,
                d.dataset.digest,
                d.dataset.source_type,
                json.loads(d.dataset.source),
                json.loads(d.dataset.schema),
                json.loads(d.dataset.profile),
                sorted([t.key, t.value] for t in d.tags),
            ]
            for d in inputs
        ),
        "models": sorted([o.step] for o in outputs),
    }


mlflow.set_experiment("models")
X = np.arange(20, dtype=float).reshape(10, 2)
y = X @ np.array([1.0, 2.0]) + 3.0
model = LinearRegression().fit(X, y)


class Doubler(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        return model_input * 2


with mlflow.start_run(run_name="train", tags={"team": "vision", "stage": "dev"}) as run:
    mlflow.log_params({"alpha": 0.5, "fit_intercept": True})
    mlflow.log_metric("rmse", 0.25)
    info = mlflow.sklearn.log_model(model, name="model", registered_model_name="lr")
    mlflow.log_metric("r2_after_model", 0.75)
    mlflow.log_metric("rmse", 0.125, step=1)
    doubler = mlflow.pyfunc.log_model(
        name="doubler", python_model=Doubler(), pip_requirements=["numpy"]
    )
run_id = run.info.run_id
version = mlflow.register_model(f"runs:/{run_id}/model", "lr2")
client = mlflow.MlflowClient()
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    client.transition_model_version_stage(name="lr", version="1", stage="Staging")
client.set_registered_model_alias("lr", "champion", "1")
by_run = mlflow.pyfunc.load_model(f"runs:/{run_id}/model").predict(X)
by_alias = mlflow.pyfunc.load_model("models:/lr@champion").predict(X)
doubled = mlflow.pyfunc.load_model(f"runs:/{run_id}/doubler").predict(
    pd.DataFrame({"a": [1.0, 2.0]})
)

df = pd.DataFrame({"x": [1.0, 2.0, 3.0], "y": [2.0, 4.0, 6.0]})
with mlflow.start_run(run_name="data") as data_run:
    mlflow.log_input(mlflow.data.from_pandas(df, name="points", targets="y"), context="train")
    mlflow.log_metric("loss", 1.5)

print(json.dumps({
    "run_id": run_id,
    "data_run_id": data_run.info.run_id,
    "model_id": info.model_id,
    "doubler_id": doubler.model_id,
    "by_run": by_run.tolist(),
    "by_alias": by_alias.tolist(),
    "doubled": doubled["a"].tolist(),
    "version": [version.name, str(version.version), version.run_id],
    "stage": client.get_model_version("lr", "1").current_stage,
    "alias": str(client.get_model_version_by_alias("lr", "champion").version),
    "train_run": described(mlflow.get_run(run_id)),
    "data_run": described(mlflow.get_run(data_run.info.run_id)),
}))
"""

# Real MLflow alone (fastflow never imported) reading both stores afterwards.
READER = """
import json, sys
import mlflow
from mlflow import MlflowClient

out = {}
for uri, run_ids in json.loads(sys.argv[1]).items():
    client = MlflowClient(uri)
    runs = {}
    for name, run_id in run_ids.items():
        run = client.get_run(run_id)
        runs[name] = {
            "datasets": sorted(
                [
                    d.dataset.name,
                    d.dataset.digest,
                    d.dataset.source_type,
                    json.loads(d.dataset.source),
                    json.loads(d.dataset.schema),
                    json.loads(d.dataset.profile),
                    sorted([t.key, t.value] for t in d.tags),
                ]
                for d in run.inputs.dataset_inputs
            ),
            "models": sorted(
                [client.get_logged_model(o.model_id).name, o.step]
                for o in run.outputs.model_outputs
            ),
            "metrics": run.data.metrics,
            "params": run.data.params,
            "status": run.info.status,
        }
    out[uri] = runs
print(json.dumps({"fastflow_imported": "fastflow" in sys.modules, "stores": out}))
"""

RUN_TABLES = ("experiments", "runs", "tags", "params", "metrics", "latest_metrics")
MODEL_TABLES = ("logged_models", "logged_model_params", "logged_model_tags")
REGISTRY_TABLES = ("registered_models", "model_versions", "registered_model_aliases")
INPUT_TABLES = ("inputs", "input_tags", "datasets")


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    return bc.run_both(tmp_path_factory.mktemp("bridge-models"), "models", MODELS)


@pytest.fixture(scope="module")
def printed(stores):
    return {side: scenario.printed() for side, scenario in stores.items()}


@pytest.fixture(scope="module")
def read_by_mlflow(stores, printed):
    request = {
        scenario.uri: {
            "train": printed[side]["run_id"],
            "data": printed[side]["data_run_id"],
        }
        for side, scenario in stores.items()
    }
    done = subprocess.run(
        [sys.executable, "-c", READER, json.dumps(request)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert not out["fastflow_imported"]
    return {side: out["stores"][scenario.uri] for side, scenario in stores.items()}


def test_every_table_of_mlflows_schema_is_compared(stores):
    compared = set(RUN_TABLES + MODEL_TABLES + REGISTRY_TABLES + INPUT_TABLES)
    compared.add("logged_model_metrics")
    assert compared <= set(bc.tables(stores["fastflow"].db))
    assert bc.differences(stores, skip=compared) == {}


def test_runs_params_tags_metrics_as_mlflows(stores):
    assert bc.differences(stores, only=RUN_TABLES) == {}


def test_logged_models_as_mlflows(stores):
    assert bc.differences(stores, only=MODEL_TABLES) == {}


def test_logged_models_point_at_the_fastflow_run(stores, printed):
    mine = printed["fastflow"]
    got = bc.rows(
        stores["fastflow"],
        "SELECT model_id, name, source_run_id, status FROM logged_models ORDER BY name",
    )
    ready = 2  # LoggedModelStatus.READY
    assert got == [
        (mine["doubler_id"], "doubler", mine["run_id"], ready),
        (mine["model_id"], "model", mine["run_id"], ready),
    ]
    assert bc.rows(
        stores["fastflow"],
        "SELECT source_type, source_id, destination_type, step FROM inputs "
        "WHERE destination_id = ?",
        (mine["model_id"],),
    ) == [("RUN_OUTPUT", mine["run_id"], "MODEL_OUTPUT", 0)]


def test_metric_logged_before_log_model_is_linked_to_the_model(stores, printed):
    mine = printed["fastflow"]
    linked = bc.rows(
        stores["fastflow"],
        "SELECT metric_name, metric_value, metric_step, run_id FROM logged_model_metrics "
        "WHERE model_id = ? AND metric_name = 'rmse'",
        (mine["model_id"],),
    )
    assert linked == [("rmse", 0.25, 0, mine["run_id"])]


def test_metric_logged_after_log_model_at_its_step_is_linked_as_mlflow_links_it(stores):
    """MLflow's fluent log_metric links a metric to the models the active run logged at
    the same step (``_get_model_ids_for_new_metric_if_exist``); fastflow's own
    ``log_metric`` must do the same once a model output is on the run."""
    query = (
        "SELECT l.name, m.metric_value FROM logged_model_metrics m "
        "JOIN logged_models l ON l.model_id = m.model_id "
        "WHERE m.metric_name = 'r2_after_model' ORDER BY l.name"
    )
    # The pyfunc model logged later at step 0 takes the step's history: linked too.
    assert bc.rows(stores["mlflow"], query) == [("doubler", 0.75), ("model", 0.75)]
    assert bc.rows(stores["fastflow"], query) == bc.rows(stores["mlflow"], query)


def test_logged_model_metrics_as_mlflows(stores):
    assert bc.differences(stores, only=("logged_model_metrics",)) == {}


def test_registry_as_mlflows(stores, printed):
    assert bc.differences(stores, only=REGISTRY_TABLES) == {}
    mine = printed["fastflow"]
    assert mine["version"] == ["lr2", "1", mine["run_id"]]
    assert mine["stage"] == "Staging"
    assert mine["alias"] == "1"
    assert bc.rows(
        stores["fastflow"], "SELECT name, version, current_stage, run_id FROM model_versions"
    ) == [("lr", 1, "Staging", mine["run_id"]), ("lr2", 1, "None", mine["run_id"])]


def test_models_load_and_predict_as_mlflows(printed):
    mine, oracle = printed["fastflow"], printed["mlflow"]
    assert mine["by_run"] == mine["by_alias"] == oracle["by_run"]
    assert mine["by_run"][:2] == pytest.approx([5.0, 11.0])
    assert mine["doubled"] == oracle["doubled"] == [2.0, 4.0]


def test_datasets_and_inputs_as_mlflows(stores, printed):
    assert bc.differences(stores, only=INPUT_TABLES) == {}
    mine = printed["fastflow"]
    assert bc.rows(
        stores["fastflow"],
        "SELECT i.source_type, d.name, i.destination_type, i.destination_id, t.name, t.value "
        "FROM inputs i JOIN datasets d ON d.dataset_uuid = i.source_id "
        "JOIN input_tags t ON t.input_uuid = i.input_uuid",
    ) == [("DATASET", "points", "RUN", mine["data_run_id"], "mlflow.data.context", "train")]


def test_get_run_inputs_and_outputs_read_by_mlflow_as_mlflows(read_by_mlflow):
    mine, oracle = read_by_mlflow["fastflow"], read_by_mlflow["mlflow"]
    assert mine == oracle
    assert [d[0] for d in mine["data"]["datasets"]] == ["points"]
    assert mine["train"]["models"] == [["doubler", 0], ["model", 0]]
    assert mine["train"]["status"] == mine["data"]["status"] == "FINISHED"


def test_fastflow_get_run_returns_inputs_and_outputs_as_mlflows(printed):
    """``fastflow.get_run`` (the script's ``mlflow.get_run``) returns ``inputs`` and
    ``outputs`` as MLflow's ``get_run`` does."""
    mine, oracle = printed["fastflow"], printed["mlflow"]
    assert oracle["train_run"]["models"] == [[0], [0]]
    assert len(oracle["data_run"]["datasets"]) == 1
    assert {k: mine[k] for k in ("train_run", "data_run")} == {
        k: oracle[k] for k in ("train_run", "data_run")
    }
