"""fastflow reads and extends a store that real MLflow created and wrote."""

import math

import fastflow


def test_fastflow_reads_and_extends_mlflow_store(tmp_path, mlflow):
    uri = f"sqlite:///{tmp_path / 'by-mlflow.db'}"
    oracle = mlflow.MlflowClient(tracking_uri=uri)
    experiment_id = oracle.create_experiment("made-by-mlflow")
    run = oracle.create_run(experiment_id, run_name="origin", tags={"source": "mlflow"})
    run_id = run.info.run_id
    oracle.log_param(run_id, "lr", "0.1")
    for step in range(5):
        oracle.log_metric(run_id, "loss", 1.0 / (step + 1), timestamp=1000 + step, step=step)
    oracle.log_metric(run_id, "nan", float("nan"), timestamp=1, step=0)

    fastflow.set_tracking_uri(uri)
    client = fastflow.MlflowClient()
    experiment = client.get_experiment_by_name("made-by-mlflow")
    assert experiment.experiment_id == experiment_id
    got = client.get_run(run_id)
    assert got.info.run_name == "origin"
    assert got.data.params == {"lr": "0.1"}
    assert got.data.tags["source"] == "mlflow"
    assert got.data.metrics["loss"] == 0.2
    assert math.isnan(got.data.metrics["nan"])
    history = client.get_metric_history(run_id, "loss")
    assert [(m.timestamp, m.step, m.value) for m in history] == [
        (1000 + s, s, 1.0 / (s + 1)) for s in range(5)
    ]

    # Extend: resume the run, log more, and start a child run under it.
    with fastflow.start_run(run_id=run_id):
        fastflow.log_metric("loss", 0.1, step=5)
        fastflow.log_param("batch", 32)
        with fastflow.start_run(nested=True) as child:
            fastflow.log_metric("acc", 0.9)
    fastflow.set_experiment("made-by-fastflow")
    with fastflow.start_run() as fresh:
        fastflow.log_metric("x", 1.0)

    resumed = oracle.get_run(run_id)
    assert resumed.info.status == "FINISHED"
    assert resumed.data.metrics["loss"] == 0.1
    assert resumed.data.params == {"lr": "0.1", "batch": "32"}
    assert len(oracle.get_metric_history(run_id, "loss")) == 6
    assert oracle.get_run(child.info.run_id).data.tags["mlflow.parentRunId"] == run_id
    new_experiment = oracle.get_experiment_by_name("made-by-fastflow")
    assert oracle.get_run(fresh.info.run_id).info.experiment_id == new_experiment.experiment_id
    assert new_experiment.artifact_location.endswith(f"/{new_experiment.experiment_id}")
