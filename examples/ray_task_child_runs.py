"""Ray tasks log for themselves: each task opens a child run of the driver's active run.

The driver starts a parent run and launches one Ray task per config. Inside a task,
``mlflow.start_run(nested=True)`` creates a child of the driver's run (tag
``mlflow.parentRunId``): fastflow hands the driver's tracking URI, experiment and active
run to Ray workers, so nothing has to be passed to the task by hand. The task logs its
params and a metric series while it trains and returns only a summary.

Run:  python examples/ray_task_child_runs.py     (RAY_NUM_CPUS=4 to use more cores)
Workers write to ./mlflow.db themselves; with FASTFLOW_RAY_FUNNEL=always they send their
records to a Ray actor on the driver's node instead, as workers on other nodes always do.
"""

import os

import fastflow as mlflow
import numpy as np
import ray

EPOCHS = 30
CONFIGS = [{"learning_rate": lr, "l2": l2} for lr in (0.01, 0.05, 0.2) for l2 in (0.0, 0.1)]


@ray.remote
def train(config: dict) -> tuple:
    """Fits a linear model by gradient descent, logging each epoch to its own child run."""
    rng = np.random.default_rng(seed=0)  # same data for every config, so curves compare
    x = rng.normal(size=(512, 8))
    y = x @ rng.normal(size=8) + 0.1 * rng.normal(size=512)
    x_train, y_train, x_val, y_val = x[:384], y[:384], x[384:], y[384:]
    weights = np.zeros(8)
    name = f"lr={config['learning_rate']},l2={config['l2']}"
    with mlflow.start_run(run_name=name, nested=True) as run:
        mlflow.log_params(config)
        for epoch in range(EPOCHS):
            residual = x_train @ weights - y_train
            gradient = x_train.T @ residual / len(y_train) + config["l2"] * weights
            weights -= config["learning_rate"] * gradient
            val_mse = float(np.mean((x_val @ weights - y_val) ** 2))
            mlflow.log_metric("val_mse", val_mse, step=epoch)
    return run.info.run_id, name, val_mse


def main() -> None:
    ray.init(num_cpus=int(os.environ.get("RAY_NUM_CPUS", "2")))
    mlflow.set_experiment("ray-task-child-runs")
    with mlflow.start_run(run_name="sweep") as parent:
        mlflow.log_params({"epochs": EPOCHS, "configs": len(CONFIGS)})
        # The parent run must be active when the tasks start their runs, so they are
        # launched (and awaited) inside this block.
        results = ray.get([train.remote(config) for config in CONFIGS])
        best_run_id, _, best_mse = min(results, key=lambda result: result[2])
        mlflow.log_metric("best_val_mse", best_mse)
        mlflow.set_tag("best_run_id", best_run_id)
    ray.shutdown()

    client = mlflow.MlflowClient()
    for run_id, name, final in results:
        child = client.get_run(run_id)
        points = len(client.get_metric_history(run_id, "val_mse"))
        parent_id = child.data.tags.get("mlflow.parentRunId")
        print(f"  child run {run_id}  {name:<16} {child.info.status}, parent {parent_id},")
        print(f"    {points} val_mse points, final {final:.4f}")
    print(f"Logged parent run {parent.info.run_id} with {len(results)} child runs from Ray tasks")
    print(f"  in experiment 'ray-task-child-runs'. Best: run {best_run_id}, val_mse {best_mse:.4f}")
    print(f"Tracking URI: {mlflow.get_tracking_uri()}")
    print("Inspect with: mlflow ui --backend-store-uri sqlite:///mlflow.db")


if __name__ == "__main__":
    main()
