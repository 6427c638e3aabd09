"""A Ray Tune sweep logged by fastflow's MLflowLoggerCallback, then its best run looked up.

A grid over learning rate and momentum (4 x 2 = 8 trials) trains a tiny linear model with
momentum SGD and reports its validation loss every epoch with ``tune.report``. The callback
(a drop-in for ``ray.air.integrations.mlflow.MLflowLoggerCallback``) logs one parent run
for the sweep and one child run per trial: the config as params, every report as metrics
at step ``training_iteration``. Afterwards the best trial's run is found with fastflow's
``search_runs`` and its loss curve is read back with fastflow's ``MlflowClient``.

Run:  python examples/ray_tune_sweep.py     (RAY_NUM_CPUS=4 to use more cores)
Runs go to ./mlflow.db, Tune's own trial files to ./ray_results.
"""

import os
import time

import fastflow as mlflow
import numpy as np
import ray
from fastflow.ray import MLflowLoggerCallback
from ray import tune

EXPERIMENT = "ray-tune-sweep"
EPOCHS = 20


def train_model(config: dict) -> None:
    """Momentum SGD; each report becomes one metrics batch at step training_iteration."""
    rng = np.random.default_rng(seed=0)  # same data in every trial, so losses compare
    x = rng.normal(size=(512, 8))
    y = x @ rng.normal(size=8) + 0.1 * rng.normal(size=512)
    x_train, y_train, x_val, y_val = x[:384], y[:384], x[384:], y[384:]
    weights, velocity = np.zeros(8), np.zeros(8)
    for _ in range(EPOCHS):
        gradient = x_train.T @ (x_train @ weights - y_train) / len(y_train)
        velocity = config["momentum"] * velocity - config["learning_rate"] * gradient
        weights += velocity
        tune.report({"val_loss": float(np.mean((x_val @ weights - y_val) ** 2))})


def best_run(sweep: str):
    # The sweep tag keeps earlier sweeps out, the metric filter the parent run (it has no
    # val_loss).
    runs = mlflow.MlflowClient().search_runs(
        [mlflow.get_experiment_by_name(EXPERIMENT).experiment_id],
        filter_string=f"tags.sweep = '{sweep}' and metrics.val_loss >= 0",
        order_by=["metrics.val_loss ASC"],
        max_results=1,
    )
    return runs[0]


def main() -> None:
    ray.init(num_cpus=int(os.environ.get("RAY_NUM_CPUS", "2")))
    sweep = time.strftime("sweep-%Y%m%d-%H%M%S")
    tuner = tune.Tuner(
        train_model,
        param_space={
            "learning_rate": tune.grid_search([0.003, 0.01, 0.03, 0.1]),
            "momentum": tune.grid_search([0.0, 0.9]),
        },
        tune_config=tune.TuneConfig(metric="val_loss", mode="min"),
        run_config=tune.RunConfig(
            name=sweep,  # also the name of the parent run
            storage_path=os.path.abspath("ray_results"),
            callbacks=[MLflowLoggerCallback(experiment_name=EXPERIMENT, tags={"sweep": sweep})],
            verbose=0,
        ),
    )
    results = tuner.fit()
    ray.shutdown()

    best_trial = results.get_best_result()
    print(f"Tune's best trial: {best_trial.config}, val_loss {best_trial.metrics['val_loss']:.4f}")
    client = mlflow.MlflowClient()
    run = best_run(sweep)
    history = client.get_metric_history(run.info.run_id, "val_loss")
    print(f"Best MLflow run:   {run.info.run_id} ({run.info.run_name}), {run.info.status}")
    print(f"  params {run.data.params}, parent {run.data.tags['mlflow.parentRunId']}")
    print(f"  val_loss by step: {[round(m.value, 3) for m in history[:5]]} ... (x{len(history)})")
    print(f"Logged {len(results)} trial runs under one parent run named '{sweep}'")
    print(f"  in experiment '{EXPERIMENT}'. Tracking URI: {mlflow.get_tracking_uri()}")
    print("Inspect with: mlflow ui --backend-store-uri sqlite:///mlflow.db")


if __name__ == "__main__":
    main()
