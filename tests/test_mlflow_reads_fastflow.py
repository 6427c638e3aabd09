"""Real MLflow 3.17.2 reads what fastflow wrote, and gets exactly what was logged."""

import math

import fastflow


def test_mlflow_reads_runs_metrics_params_tags(db_uri, mlflow):
    fastflow.set_experiment("training")
    with fastflow.start_run(run_name="parent", tags={"team": "vision"}) as parent:
        fastflow.log_params({"lr": 0.01, "layers": 4})
        fastflow.set_tag("stage", "dev")
        for step in range(50):
            fastflow.log_metric("loss", 1.0 / (step + 1), step=step)
        fastflow.log_metric("nan_metric", float("nan"), step=1)
        fastflow.log_metric("inf_metric", float("inf"), step=1)
        fastflow.log_metric("explicit", 2.5, step=7, timestamp=1_700_000_000_000)
        with fastflow.start_run(run_name="child", nested=True) as child:
            fastflow.log_metrics({"acc": 0.5, "f1": 0.25}, step=3)
    failed = None
    try:
        with fastflow.start_run(run_name="broken") as failed:
            fastflow.log_metric("loss", 3.0)
            raise RuntimeError("boom")
    except RuntimeError:
        pass

    client = mlflow.MlflowClient(tracking_uri=db_uri)
    experiment = client.get_experiment_by_name("training")
    assert experiment is not None
    assert experiment.experiment_id == fastflow.get_experiment_by_name("training").experiment_id

    run = client.get_run(parent.info.run_id)
    assert run.info.status == "FINISHED"
    assert run.info.run_name == "parent"
    assert run.info.experiment_id == experiment.experiment_id
    assert run.info.end_time >= run.info.start_time
    assert run.info.artifact_uri.endswith(
        f"/{experiment.experiment_id}/{run.info.run_id}/artifacts"
    )
    assert run.data.params == {"lr": "0.01", "layers": "4"}
    assert run.data.tags["team"] == "vision"
    assert run.data.tags["stage"] == "dev"
    assert run.data.tags["mlflow.runName"] == "parent"
    assert run.data.tags["mlflow.source.type"] == "LOCAL"
    assert "mlflow.user" in run.data.tags
    assert run.data.metrics["loss"] == 1.0 / 50
    assert math.isnan(run.data.metrics["nan_metric"])
    assert run.data.metrics["inf_metric"] == 1.7976931348623157e308
    assert run.data.metrics["explicit"] == 2.5

    history = client.get_metric_history(parent.info.run_id, "loss")
    assert [(m.step, m.value) for m in history] == [(s, 1.0 / (s + 1)) for s in range(50)]
    ours = fastflow.MlflowClient().get_metric_history(parent.info.run_id, "loss")
    assert [(m.timestamp, m.step, m.value) for m in history] == [
        (m.timestamp, m.step, m.value) for m in ours
    ]
    explicit = client.get_metric_history(parent.info.run_id, "explicit")
    assert [(m.timestamp, m.step, m.value) for m in explicit] == [(1_700_000_000_000, 7, 2.5)]

    child_run = client.get_run(child.info.run_id)
    assert child_run.data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert child_run.data.metrics == {"acc": 0.5, "f1": 0.25}
    assert client.get_run(failed.info.run_id).info.status == "FAILED"

    mlflow.set_tracking_uri(db_uri)
    try:
        frame = mlflow.search_runs(experiment_ids=[experiment.experiment_id])
        assert set(frame["run_id"]) == {
            parent.info.run_id,
            child.info.run_id,
            failed.info.run_id,
        }
        by_id = frame.set_index("run_id")
        assert by_id.loc[parent.info.run_id, "metrics.loss"] == 1.0 / 50
        assert by_id.loc[child.info.run_id, "tags.mlflow.parentRunId"] == parent.info.run_id
        assert by_id.loc[failed.info.run_id, "status"] == "FAILED"
        nested = mlflow.search_runs(
            experiment_ids=[experiment.experiment_id],
            filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'",
            output_format="list",
        )
        assert [r.info.run_id for r in nested] == [child.info.run_id]
    finally:
        mlflow.set_tracking_uri(None)


def test_latest_metrics_follow_mlflow_rule(db_uri, mlflow):
    with fastflow.start_run() as run:
        fastflow.log_metric("m", 1.0, step=0, timestamp=100)
        fastflow.log_metric("m", 0.5, step=1, timestamp=50)
        fastflow.log_metric("m", 9.0, step=0, timestamp=10)
        fastflow.log_metric("m", 0.5, step=1, timestamp=50)
        fastflow.log_metric("n", float("nan"), step=0, timestamp=5)
        fastflow.log_metric("n", -1.0, step=0, timestamp=5)
    client = mlflow.MlflowClient(tracking_uri=db_uri)
    data = client.get_run(run.info.run_id).data
    assert data.metrics["m"] == 0.5
    assert math.isnan(data.metrics["n"])
    # The exact duplicate point is stored once, as MLflow's primary key makes it.
    assert len(client.get_metric_history(run.info.run_id, "m")) == 3


def test_client_api_written_runs(db_uri, mlflow):
    client = fastflow.MlflowClient()
    experiment_id = client.create_experiment("client-exp", tags={"owner": "me"})
    run = client.create_run(experiment_id, run_name="by-client", tags={"k": "v"})
    run_id = run.info.run_id
    client.log_param(run_id, "p", "1")
    client.set_tag(run_id, "t", "x")
    client.log_metric(run_id, "m", 1.5, timestamp=10, step=2)
    client.log_batch(
        run_id,
        metrics=[fastflow.Metric("b", 2.0, 20, 3)],
        params=[fastflow.Param("q", "2")],
        tags=[fastflow.RunTag("u", "y")],
    )
    client.update_run(run_id, name="renamed")
    client.set_terminated(run_id, "KILLED")

    oracle = mlflow.MlflowClient(tracking_uri=db_uri)
    got = oracle.get_run(run_id)
    assert got.info.status == "KILLED"
    assert got.info.run_name == "renamed"
    assert got.data.tags["mlflow.runName"] == "renamed"
    assert got.data.params == {"p": "1", "q": "2"}
    assert got.data.tags["t"] == "x" and got.data.tags["u"] == "y" and got.data.tags["k"] == "v"
    assert got.data.metrics == {"m": 1.5, "b": 2.0}
    assert oracle.get_experiment(experiment_id).tags == {"owner": "me"}

    client.delete_run(run_id)
    assert oracle.get_run(run_id).info.lifecycle_stage == "deleted"
    client.restore_run(run_id)
    assert oracle.get_run(run_id).info.lifecycle_stage == "active"
    client.delete_experiment(experiment_id)
    assert oracle.get_experiment(experiment_id).lifecycle_stage == "deleted"
    assert oracle.get_run(run_id).info.lifecycle_stage == "deleted"


def test_make_visible_shows_queued_points_to_mlflow_in_this_process(tmp_path, mlflow, monkeypatch):
    # The writer would otherwise commit on its own only after ten minutes.
    monkeypatch.setenv("FASTFLOW_FLUSH_INTERVAL_MS", "600000")
    uri = f"sqlite:///{tmp_path / 'visible.db'}"
    tracker = fastflow._fastflow.Tracker(uri, str(tmp_path / "artifacts"))
    run_id = tracker.create_run("0", "me", 0, "r", [])[0][0]
    oracle = mlflow.MlflowClient(tracking_uri=uri)
    for round_ in range(3):
        tracker.log_batch(
            run_id, [("m", float(s), 1, round_ * 100 + s) for s in range(100)], [], []
        )
        assert len(oracle.get_metric_history(run_id, "m")) == round_ * 100
        tracker.make_visible()
        assert len(oracle.get_metric_history(run_id, "m")) == (round_ + 1) * 100
        # Nothing pending: answered without the writer.
        tracker.make_visible()
    tracker.flush()
    assert oracle.get_run(run_id).data.metrics == {"m": 99.0}
