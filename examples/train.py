"""The drop-in: this script is MLflow code with one changed import line."""

import fastflow as mlflow

mlflow.set_experiment("example")
with mlflow.start_run(run_name="train"):
    mlflow.log_params({"lr": 0.001, "batch_size": 64})
    for step in range(10_000):
        mlflow.log_metric("loss", 1.0 / (step + 1), step=step)
    with mlflow.start_run(run_name="eval", nested=True):
        mlflow.log_metric("accuracy", 0.93)
print("runs are in", mlflow.get_tracking_uri())
