"""MLflow's autologging on fastflow's runs: ``mlflow.autolog()`` and ``mlflow.sklearn.autolog()``
then ``fit()`` outside any run and inside ``with mlflow.start_run()``, after
``import fastflow as mlflow`` and after ``import mlflow``, each in a fresh interpreter; the two
stores compared table by table (``bridge_compare`` says what is normalised)."""

import bridge_compare as bc
import pytest

AUTOLOG = """
import json

import numpy as np
from sklearn.linear_model import LinearRegression, Ridge
from sklearn.tree import DecisionTreeRegressor

rng = np.random.default_rng(0)
X = rng.normal(size=(40, 3))
y = X @ np.array([1.0, -2.0, 0.5]) + 0.1 * rng.normal(size=40)
seen = {}

# Generic autologging first: it turns on every integration, sklearn's included.
mlflow.set_experiment("generic")
mlflow.autolog()
DecisionTreeRegressor(max_depth=2, random_state=0).fit(X, y)
seen["generic"] = mlflow.last_active_run().info.run_id
seen["active_after_generic"] = mlflow.active_run() is not None

mlflow.set_experiment("outside")
mlflow.sklearn.autolog()
LinearRegression().fit(X, y)
seen["outside"] = mlflow.last_active_run().info.run_id
seen["active_after_outside"] = mlflow.active_run() is not None

mlflow.set_experiment("inside")
with mlflow.start_run(run_name="inside", tags={"kind": "manual"}) as run:
    mlflow.log_param("note", "mine")
    Ridge(alpha=0.5).fit(X, y)
    seen["active_after_fit"] = mlflow.active_run().info.run_id
    mlflow.log_metric("after_fit", 1.0, step=1)
seen["inside"] = run.info.run_id
seen["active_at_end"] = mlflow.active_run() is not None
print(json.dumps(seen))
"""

RUN_TABLES = ("experiments", "runs", "tags", "params", "metrics", "latest_metrics")
MODEL_TABLES = (
    "logged_models",
    "logged_model_params",
    "logged_model_tags",
    "logged_model_metrics",
)
INPUT_TABLES = ("inputs", "input_tags", "datasets")


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    return bc.run_both(tmp_path_factory.mktemp("bridge-autolog"), "autolog", AUTOLOG)


@pytest.fixture(scope="module")
def printed(stores):
    return {side: scenario.printed() for side, scenario in stores.items()}


def test_same_runs_params_metrics_and_tags_as_mlflow(stores):
    assert bc.differences(stores, only=RUN_TABLES) == {}


def test_same_logged_models_as_mlflow(stores):
    assert bc.differences(stores, only=MODEL_TABLES) == {}


def test_same_datasets_and_inputs_as_mlflow(stores):
    assert bc.differences(stores, only=INPUT_TABLES) == {}


def test_every_other_table_as_mlflows(stores):
    compared = set(RUN_TABLES + MODEL_TABLES + INPUT_TABLES)
    assert bc.differences(stores, skip=compared) == {}


def test_no_run_left_running(stores, printed):
    mine = printed["fastflow"]
    assert not mine["active_after_generic"]
    assert not mine["active_after_outside"]
    assert not mine["active_at_end"]
    for scenario in stores.values():
        assert bc.rows(scenario, "SELECT DISTINCT status FROM runs") == [("FINISHED",)]


def test_autologging_runs_and_the_users_run(stores, printed):
    """Outside a run autologging starts and ends one of its own per fit; inside, it logs
    into the user's run (the one fastflow started) and leaves it active."""
    mine = printed["fastflow"]
    assert mine["active_after_fit"] == mine["inside"]
    assert len({mine["generic"], mine["outside"], mine["inside"]}) == 3
    by_run = dict(
        bc.rows(
            stores["fastflow"],
            "SELECT run_uuid, value FROM tags WHERE key = 'estimator_name'",
        )
    )
    assert by_run == {
        mine["generic"]: "DecisionTreeRegressor",
        mine["outside"]: "LinearRegression",
        mine["inside"]: "Ridge",
    }
    autologged = bc.rows(
        stores["fastflow"], "SELECT run_uuid FROM tags WHERE key = 'mlflow.autologging'"
    )
    assert sorted(autologged) == sorted([(mine["generic"],), (mine["outside"],)])
    inside = dict(
        bc.rows(
            stores["fastflow"],
            "SELECT key, value FROM params WHERE run_uuid = ?",
            (mine["inside"],),
        )
    )
    assert inside["note"] == "mine" and inside["alpha"] == "0.5"
    metrics = bc.rows(
        stores["fastflow"],
        "SELECT key FROM metrics WHERE run_uuid = ? ORDER BY key",
        (mine["inside"],),
    )
    assert ("training_r2_score",) in metrics and ("after_fit",) in metrics


def test_each_fit_logs_a_ready_model_of_its_run(stores, printed):
    mine = printed["fastflow"]
    models = bc.rows(stores["fastflow"], "SELECT source_run_id, name, status FROM logged_models")
    ready = 2  # LoggedModelStatus.READY
    assert sorted(models) == sorted(
        (run_id, "model", ready) for run_id in (mine["generic"], mine["outside"], mine["inside"])
    )
