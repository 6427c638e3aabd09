"""Fluent semantics as MLflow has them: run stack, auto-start, env vars, exit, import paths."""

import inspect
import subprocess
import sys
import textwrap

import fastflow
import pytest


def test_import_paths_mirror_mlflow():
    from fastflow import ActiveRun, MlflowClient
    from fastflow.entities import Experiment, Metric, Param, Run, RunInfo, RunStatus, ViewType
    from fastflow.exceptions import MlflowException
    from fastflow.tracking import MlflowClient as TrackingClient

    assert MlflowClient is TrackingClient
    assert issubclass(ActiveRun, Run)
    assert RunStatus.to_string(RunStatus.FAILED) == "FAILED"
    assert ViewType.ALL == 3
    assert {Experiment, Metric, Param, RunInfo, MlflowException}


def test_default_tracking_uri_is_absolute_mlflow_db(tmp_path):
    assert fastflow.get_tracking_uri() == f"sqlite:///{tmp_path / 'mlflow.db'}"


def test_auto_started_run_and_last_active_run(db_uri, mlflow):
    fastflow.log_metric("m", 1.0)
    run = fastflow.active_run()
    assert run is not None
    fastflow.end_run()
    assert fastflow.active_run() is None
    assert fastflow.last_active_run().info.run_id == run.info.run_id
    assert mlflow.MlflowClient(tracking_uri=db_uri).get_run(run.info.run_id).data.metrics == {
        "m": 1.0
    }


def test_nested_and_parent_run_id(db_uri, mlflow):
    with fastflow.start_run() as parent:
        with fastflow.start_run(nested=True) as child:
            assert fastflow.active_run().info.run_id == child.info.run_id
        with fastflow.start_run(parent_run_id=parent.info.run_id, nested=True) as other:
            pass
        with pytest.raises(Exception, match="does not match the specified parent_run_id"):
            with fastflow.start_run(parent_run_id=child.info.run_id, nested=True):
                pass
    oracle = mlflow.MlflowClient(tracking_uri=db_uri)
    for run in (child, other):
        assert oracle.get_run(run.info.run_id).data.tags["mlflow.parentRunId"] == (
            parent.info.run_id
        )


def test_resume_by_run_id_and_env(db_uri, monkeypatch, mlflow):
    with fastflow.start_run() as first:
        fastflow.log_metric("m", 1.0, step=0)
    monkeypatch.setenv("MLFLOW_RUN_ID", first.info.run_id)
    with fastflow.start_run() as resumed:
        assert resumed.info.run_id == first.info.run_id
        assert resumed.info.status == "RUNNING"
        fastflow.log_metric("m", 2.0, step=1)
    oracle = mlflow.MlflowClient(tracking_uri=db_uri)
    assert len(oracle.get_metric_history(first.info.run_id, "m")) == 2
    assert oracle.get_run(first.info.run_id).info.status == "FINISHED"


def test_experiment_from_env(db_uri, monkeypatch, mlflow):
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "from-env")
    with fastflow.start_run() as run:
        pass
    oracle = mlflow.MlflowClient(tracking_uri=db_uri)
    experiment = oracle.get_experiment_by_name("from-env")
    assert run.info.experiment_id == experiment.experiment_id
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME")
    monkeypatch.setenv("MLFLOW_EXPERIMENT_ID", experiment.experiment_id)
    with fastflow.start_run() as run:
        assert run.info.experiment_id == experiment.experiment_id


def test_set_experiment_exports_id(db_uri):
    import os

    experiment = fastflow.set_experiment("exported")
    assert os.environ["MLFLOW_EXPERIMENT_ID"] == experiment.experiment_id
    with fastflow.start_run() as run:
        assert run.info.experiment_id == experiment.experiment_id


def test_synchronous_is_accepted_everywhere(db_uri, mlflow):
    with fastflow.start_run() as run:
        assert fastflow.log_metric("a", 1.0, synchronous=True) is None
        fastflow.log_metric("b", 1.0, synchronous=False).wait()
        fastflow.log_metrics({"c": 1.0}, synchronous=False).wait()
        assert fastflow.log_param("p", 5, synchronous=True) == 5
        fastflow.set_tag("t", "v", synchronous=False).wait()
        fastflow.MlflowClient().log_metric(run.info.run_id, "d", 1.0, synchronous=True)
    got = mlflow.MlflowClient(tracking_uri=db_uri).get_run(run.info.run_id).data
    assert set(got.metrics) == {"a", "b", "c", "d"}


def test_exit_ends_the_active_run_and_writes_everything(tmp_path, mlflow):
    uri = f"sqlite:///{tmp_path / 'exit.db'}"
    script = textwrap.dedent(
        f"""
        import fastflow
        fastflow.set_tracking_uri({uri!r})
        run = fastflow.start_run()
        for step in range(50_000):
            fastflow.log_metric("m", float(step), step=step)
        print(run.info.run_id)
        """
    )
    run_id = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    ).stdout.strip()
    oracle = mlflow.MlflowClient(tracking_uri=uri)
    assert oracle.get_run(run_id).info.status == "FINISHED"
    assert len(oracle.get_metric_history(run_id, "m")) == 50_000


def test_demo_runs(tmp_path, mlflow):
    out = subprocess.run(
        [sys.executable, "-m", "fastflow", "demo"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "mlflow ui --backend-store-uri sqlite:///mlflow.db" in out
    oracle = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = oracle.get_experiment_by_name("fastflow-demo")
    runs = oracle.search_runs([experiment.experiment_id])
    assert len(runs) == 5
    assert all(r.info.status == "FINISHED" for r in runs)


def test_tags_and_experiment_tags(db_uri, mlflow):
    fastflow.set_experiment("tagged")
    fastflow.set_experiment_tag("owner", "ml-team")
    fastflow.set_experiment_tags({"stage": "dev", "n": 3})
    with fastflow.start_run() as run:
        fastflow.set_tags({"a": 1, "b": "x"})
        fastflow.delete_tag("a")
        with pytest.raises(fastflow.MlflowException) as info:
            fastflow.delete_tag("missing")
        assert info.value.error_code == "RESOURCE_DOES_NOT_EXIST"
        assert info.value.message == f"No tag with name: missing in run with id {run.info.run_id}"
        fastflow.set_tag("mlflow.runName", "renamed")
    oracle = mlflow.MlflowClient(tracking_uri=db_uri)
    got = oracle.get_run(run.info.run_id)
    assert "a" not in got.data.tags and got.data.tags["b"] == "x"
    assert got.info.run_name == "renamed"
    assert oracle.get_experiment_by_name("tagged").tags == {
        "owner": "ml-team",
        "stage": "dev",
        "n": "3",
    }


def test_a_run_left_open_by_an_earlier_ray_task_ends_failed(db_uri, mlflow):
    """Ray runs tasks one after another in one worker process; what one task left open must
    not become the parent of the next task's runs."""
    stale = fastflow.start_run(run_name="left-open")
    stale._task = "task-a"
    fastflow.log_metric("kept", 1.0)
    fastflow.fluent._end_runs_left_by_other_tasks(fastflow.fluent._stack(), "task-b")
    assert fastflow.active_run() is None
    with fastflow.start_run(nested=True) as fresh:
        pass
    oracle = mlflow.MlflowClient(tracking_uri=db_uri)
    assert oracle.get_run(stale.info.run_id).info.status == "FAILED"
    assert oracle.get_run(stale.info.run_id).data.metrics == {"kept": 1.0}
    assert "mlflow.parentRunId" not in oracle.get_run(fresh.info.run_id).data.tags

    fastflow.log_param("implicit", 1)  # starts a run, as in MLflow
    implicit = fastflow.active_run()
    implicit._task = "task-c"
    fastflow.fluent._end_runs_left_by_other_tasks(fastflow.fluent._stack(), "task-d")
    assert oracle.get_run(implicit.info.run_id).info.status == "FINISHED"


def test_every_call_shape_of_log_metric_lands_as_mlflow_reads_it(db_uri, mlflow):
    # The common shapes take log_metric's own entry, the rest the full signature; a keyword
    # name built at run time is not interned, so the entry compares its text.
    step_name = "".join(["st", "ep"])
    with fastflow.start_run() as run:
        for i in range(3):  # the first call of a key takes the full path, the next ones not
            fastflow.log_metric("bare", float(i))
            fastflow.log_metric("positional", i, 10 + i)
            fastflow.log_metric("keyword", 0.5 * i, step=20 + i)
            fastflow.log_metric("built", 1.0 + i, **{step_name: 30 + i})
            fastflow.log_metric(key="named", value=2.0, step=i)
            fastflow.log_metric("stamped", 3.0, step=i, timestamp=1_700_000_000_000 + i)
            fastflow.log_metric("none-step", 4.0 + i, step=None)
        with pytest.raises(TypeError, match="unexpected keyword argument 'stepp'"):
            fastflow.log_metric("bare", 1.0, stepp=1)
        with pytest.raises(TypeError, match="missing 1 required positional argument"):
            fastflow.log_metric("bare")
        with pytest.raises(fastflow.MlflowException, match="valid double"):
            fastflow.log_metric("bare", "x", step=1)
    client = mlflow.MlflowClient(tracking_uri=db_uri)

    def history(key):
        points = client.get_metric_history(run.info.run_id, key)
        return [(p.value, p.step) for p in sorted(points, key=lambda p: (p.step, p.timestamp))]

    assert history("bare") == [(0.0, 0), (1.0, 0), (2.0, 0)]
    assert history("positional") == [(0.0, 10), (1.0, 11), (2.0, 12)]
    assert history("keyword") == [(0.0, 20), (0.5, 21), (1.0, 22)]
    assert history("built") == [(1.0, 30), (2.0, 31), (3.0, 32)]
    assert history("named") == [(2.0, 0), (2.0, 1), (2.0, 2)]
    stamped = client.get_metric_history(run.info.run_id, "stamped")
    assert sorted(p.timestamp for p in stamped) == [1_700_000_000_000 + i for i in range(3)]
    assert [p.step for p in client.get_metric_history(run.info.run_id, "none-step")] == [0, 0, 0]
    assert str(inspect.signature(fastflow.log_metric)) == (
        "(key, value, step=None, synchronous=None, timestamp=None, run_id=None, "
        "model_id=None, dataset=None)"
    )
