"""Logging to a real `mlflow server` on 127.0.0.1 over HTTP; real MLflow's client reads it
back. Faults: the server stopped and restarted mid-run, 503 with Retry-After, basic auth,
an unreachable server."""

import math
import sqlite3
import threading
import time

import fastflow
import pytest
from remote_server import MlflowServer, Proxy, certificates


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    running = MlflowServer(tmp_path_factory.mktemp("server")).start()
    yield running
    running.stop()


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_JITTER", "0.1")


def _points(database, run_id, key):
    with sqlite3.connect(database) as conn:
        return conn.execute(
            "SELECT step, value FROM metrics WHERE run_uuid = ? AND key = ? ORDER BY step",
            (run_id, key),
        ).fetchall()


def test_mlflow_reads_what_fastflow_logged(server, mlflow):
    fastflow.set_tracking_uri(server.uri)
    fastflow.set_experiment("remote")
    with fastflow.start_run(run_name="parent", tags={"team": "ml"}) as parent:
        fastflow.log_params({"lr": 0.01, "layers": 3})
        with fastflow.start_run(run_name="child", nested=True) as child:
            for step in range(5_000):
                fastflow.log_metric("loss", 1.0 / (step + 1), step=step)
            fastflow.log_metric("nan", float("nan"))
            fastflow.log_metric("big", float("inf"))
            fastflow.set_tag("note", "é ünïcode")
        with pytest.raises(fastflow.MlflowException) as changed:
            fastflow.log_param("lr", 0.5)
        assert changed.value.error_code == "INVALID_PARAMETER_VALUE"
    failed = fastflow.start_run(run_name="failing")
    fastflow.end_run("FAILED")

    oracle = mlflow.MlflowClient(tracking_uri=server.uri)
    got_parent = oracle.get_run(parent.info.run_id)
    assert got_parent.info.status == "FINISHED"
    assert got_parent.data.params == {"lr": "0.01", "layers": "3"}
    assert got_parent.data.tags["team"] == "ml"
    got_child = oracle.get_run(child.info.run_id)
    assert got_child.data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert got_child.data.tags["note"] == "é ünïcode"
    assert math.isnan(got_child.data.metrics["nan"])
    assert got_child.data.metrics["big"] > 1e300
    history = oracle.get_metric_history(child.info.run_id, "loss")
    assert sorted(m.step for m in history) == list(range(5_000))
    assert {m.step: m.value for m in history}[4_999] == 1.0 / 5_000
    assert oracle.get_run(failed.info.run_id).info.status == "FAILED"
    # fastflow reads through the same server.
    found = fastflow.search_runs(experiment_names=["remote"], filter_string="tags.team = 'ml'")
    assert list(found["run_id"]) == [parent.info.run_id]
    assert len(fastflow.MlflowClient().get_metric_history(child.info.run_id, "loss")) == 5_000


def test_points_logged_while_the_server_is_down_arrive_once(tmp_path, mlflow):
    running = MlflowServer(tmp_path).start()
    try:
        fastflow.set_tracking_uri(running.uri)
        run = fastflow.start_run()
        for step in range(3_000):
            fastflow.log_metric("x", float(step), step=step)
        fastflow.flush()
        running.stop()
        started = time.perf_counter()
        for step in range(3_000, 10_000):
            fastflow.log_metric("x", float(step), step=step)  # must neither raise nor block
        assert time.perf_counter() - started < 30
        time.sleep(1.0)  # the writer tries, fails and keeps the points
        restart = threading.Timer(2.0, running.start)
        restart.start()
        fastflow.flush()  # waits until the restarted server has every point
        restart.join()
        fastflow.end_run()
        points = _points(tmp_path / "server.db", run.info.run_id, "x")
        assert [step for step, _ in points] == list(range(10_000))
        oracle = mlflow.MlflowClient(tracking_uri=running.uri)
        assert oracle.get_run(run.info.run_id).info.status == "FINISHED"
    finally:
        running.stop()


def test_503_with_retry_after_loses_nothing(server, mlflow):
    proxy = Proxy(server.uri, refuse=4, retry_after="1")
    try:
        fastflow.set_tracking_uri(proxy.uri)
        with fastflow.start_run() as run:
            for step in range(4_000):
                fastflow.log_metric("y", float(step), step=step)
        assert proxy.refused == 4
        history = mlflow.MlflowClient(tracking_uri=server.uri).get_metric_history(
            run.info.run_id, "y"
        )
        assert sorted(m.step for m in history) == list(range(4_000))
    finally:
        proxy.close()


def test_basic_auth(server, mlflow, monkeypatch):
    proxy = Proxy(server.uri, credentials=("ana", "s3cret-pass"))
    wrong = Proxy(server.uri, credentials=("ana", "s3cret-pass"))
    try:
        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "ana")
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "s3cret-pass")
        fastflow.set_tracking_uri(proxy.uri)
        with fastflow.start_run() as run:
            fastflow.log_metric("z", 1.0)
        assert mlflow.MlflowClient(tracking_uri=server.uri).get_run(
            run.info.run_id
        ).data.metrics == {"z": 1.0}

        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "not-the-password")
        client = fastflow.MlflowClient(wrong.uri)
        with pytest.raises(fastflow.MlflowException) as refused:
            client.create_run("0")
        assert refused.value.error_code == "UNAUTHENTICATED"
        assert "not-the-password" not in str(refused.value)
        assert "not-the-password" not in repr(client._tracker)
    finally:
        proxy.close()
        wrong.close()


def test_tls_is_verified_unless_told_otherwise(server, tmp_path, monkeypatch):
    cert, key, authority = certificates(tmp_path)
    proxies = [Proxy(server.uri, certificate=(cert, key)) for _ in range(3)]
    try:
        untrusted, pinned, insecure = proxies
        with pytest.raises(fastflow.MlflowException) as refused:
            fastflow.MlflowClient(untrusted.uri).create_run("0")
        assert "runs/create" in str(refused.value)

        monkeypatch.setenv("MLFLOW_TRACKING_SERVER_CERT_PATH", authority)
        assert fastflow.MlflowClient(pinned.uri).create_run("0").info.run_id
        monkeypatch.delenv("MLFLOW_TRACKING_SERVER_CERT_PATH")

        monkeypatch.setenv("MLFLOW_TRACKING_INSECURE_TLS", "true")
        assert fastflow.MlflowClient(insecure.uri).create_run("0").info.run_id
    finally:
        for proxy in proxies:
            proxy.close()


def test_an_unreachable_server_fails_synchronous_calls_clearly():
    dead = "http://127.0.0.1:9"  # the discard port: nothing listens there
    client = fastflow.MlflowClient(dead)
    with pytest.raises(fastflow.MlflowException) as failed:
        client.create_run("0")
    assert "127.0.0.1:9" in str(failed.value)
    assert "runs/create" in str(failed.value)


def test_ray_tasks_log_to_a_remote_server(server, ray_cluster, mlflow):
    ray = ray_cluster

    @ray.remote
    def train(index):
        import fastflow as mlflow

        with mlflow.start_run(nested=True) as run:
            for step in range(1_000):
                mlflow.log_metric("loss", float(step), step=step)
            return run.info.run_id

    fastflow.set_tracking_uri(server.uri)
    with fastflow.start_run(run_name="ray-driver") as parent:
        children = ray.get([train.remote(i) for i in range(4)])
    oracle = mlflow.MlflowClient(tracking_uri=server.uri)
    for run_id in children:
        run = oracle.get_run(run_id)
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert run.info.status == "FINISHED"
        assert len(oracle.get_metric_history(run_id, "loss")) == 1_000
