"""The tracking URI, flushing and the image type: module-level state a script sets."""

import pathlib

import numpy as np
from scenario import scenario


@scenario
def tracking_uri_default(mlflow, call):
    call(mlflow.get_tracking_uri)
    call(lambda: mlflow.MlflowClient().tracking_uri)


@scenario(
    cases={
        "relative": "sqlite:///other.db",
        "absolute_path": "absolute",
        "pathlib": "pathlib",
        "same_store": "sqlite:///mlflow.db",
    }
)
def set_tracking_uri(mlflow, call, uri):
    if uri == "absolute":
        uri = f"sqlite:///{pathlib.Path('other.db').resolve()}"
    elif uri == "pathlib":
        uri = pathlib.Path("other.db").resolve()
    call(mlflow.set_tracking_uri, uri)
    call(mlflow.get_tracking_uri)
    with mlflow.start_run() as run:
        call(mlflow.log_param, "p", "1")
    call(mlflow.get_run, run.info.run_id)
    call(lambda: mlflow.MlflowClient().get_run(run.info.run_id).data.params)


@scenario(env={"MLFLOW_TRACKING_URI": "sqlite:///from_env.db"})
def tracking_uri_from_environment(mlflow, call):
    call(mlflow.get_tracking_uri)
    with mlflow.start_run() as run:
        call(mlflow.log_metric, "m", 1.0)
    call(lambda: mlflow.MlflowClient().get_run(run.info.run_id).data.metrics)


@scenario
def flush_async_logging(mlflow, call):
    with mlflow.start_run() as run:
        call(mlflow.log_metric, "m", 1.0, synchronous=False)
        call(mlflow.log_metrics, {"a": 1.0}, synchronous=False)
        call(mlflow.flush_async_logging)
    call(mlflow.flush_async_logging)
    # MLflow's queue hands separate calls to a pool of threads, so which of two keys logged
    # asynchronously reaches latest_metrics first (the order get_run lists them) varies
    # from run to run there.
    call(lambda: sorted(mlflow.get_run(run.info.run_id).data.metrics.items()))
    call(lambda: mlflow.get_run(run.info.run_id).info)


@scenario
def image_type(mlflow, call):
    pixels = np.arange(4 * 5 * 3, dtype=np.uint8).reshape(4, 5, 3)
    image = call(mlflow.Image, pixels)
    call(lambda: image.size)
    call(lambda: np.asarray(image.to_array()).tolist())
    with mlflow.start_run():
        call(mlflow.log_image, image, key="img", step=0)
        call(mlflow.log_image, image, "direct.png")
