"""Ray tasks train, the driver logs: only the driver process talks to MLflow.

Each Ray task fits a tiny linear model for one hyperparameter config and returns its
validation curve. The driver logs one nested run per result under a parent "sweep" run,
then records the best config on the parent. This is the simplest pattern: workers need no
tracking setup at all, and the store only ever sees one writer.

Run:  python examples/ray_driver_logging.py     (RAY_NUM_CPUS=4 to use more cores)
Runs go to ./mlflow.db in the current directory.
"""

import os

import fastflow as mlflow
import numpy as np
import ray

EPOCHS = 30
CONFIGS = [{"learning_rate": lr, "l2": l2} for lr in (0.01, 0.05, 0.2) for l2 in (0.0, 0.1)]


@ray.remote
def train(config: dict) -> dict:
    """Gradient descent on a fixed synthetic regression problem; returns plain data only."""
    rng = np.random.default_rng(seed=0)  # same data for every config, so curves compare
    x = rng.normal(size=(512, 8))
    y = x @ rng.normal(size=8) + 0.1 * rng.normal(size=512)
    x_train, y_train, x_val, y_val = x[:384], y[:384], x[384:], y[384:]
    weights = np.zeros(8)
    val_mse = []
    for _ in range(EPOCHS):
        residual = x_train @ weights - y_train
        gradient = x_train.T @ residual / len(y_train) + config["l2"] * weights
        weights -= config["learning_rate"] * gradient
        val_mse.append(float(np.mean((x_val @ weights - y_val) ** 2)))
    return {"config": config, "val_mse": val_mse}


def main() -> None:
    ray.init(num_cpus=int(os.environ.get("RAY_NUM_CPUS", "2")))
    mlflow.set_experiment("ray-driver-logging")
    pending = [train.remote(config) for config in CONFIGS]
    best_mse, best_run_id = float("inf"), None
    with mlflow.start_run(run_name="sweep") as parent:
        mlflow.log_params({"epochs": EPOCHS, "configs": len(CONFIGS)})
        # ray.wait hands over results in completion order, so logging overlaps training.
        while pending:
            [done], pending = ray.wait(pending)
            result = ray.get(done)
            config = result["config"]
            name = f"lr={config['learning_rate']},l2={config['l2']}"
            with mlflow.start_run(run_name=name, nested=True) as child:
                mlflow.log_params(config)
                for epoch, mse in enumerate(result["val_mse"]):
                    mlflow.log_metric("val_mse", mse, step=epoch)
            final = result["val_mse"][-1]
            print(f"  child run {child.info.run_id}  {name:<16} final val_mse {final:.4f}")
            if final < best_mse:
                best_mse, best_run_id = final, child.info.run_id
        mlflow.log_metric("best_val_mse", best_mse)
        mlflow.set_tag("best_run_id", best_run_id)
    ray.shutdown()

    print(f"Logged parent run {parent.info.run_id} with {len(CONFIGS)} child runs")
    print(f"  ({EPOCHS} val_mse points each) in experiment 'ray-driver-logging'.")
    print(f"Best: run {best_run_id}, val_mse {best_mse:.4f}")
    print(f"Tracking URI: {mlflow.get_tracking_uri()}")
    print("Inspect with: mlflow ui --backend-store-uri sqlite:///mlflow.db")


if __name__ == "__main__":
    main()
