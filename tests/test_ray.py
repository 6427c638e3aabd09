"""Ray tasks, actors and Tune trials log child runs of the driver's run; real MLflow reads
them back. One local Ray instance (2 CPUs) serves the whole module."""

import fastflow
import pytest
from fastflow.ray import MLflowLoggerCallback, setup_mlflow


def _runs(mlflow, uri, experiment_name):
    mlflow.set_tracking_uri(uri)
    return mlflow.search_runs(experiment_names=[experiment_name], output_format="list")


def _steps(oracle, run_id, key):
    return sorted(m.step for m in oracle.get_metric_history(run_id, key))


def test_sixteen_tasks_start_child_runs_of_the_driver_run(db_uri, ray_cluster, mlflow):
    ray = ray_cluster
    points = 5_000

    @ray.remote
    def train(index):
        import fastflow as mlflow

        with mlflow.start_run(nested=True, run_name=f"task-{index}") as run:
            mlflow.log_param("index", index)
            for step in range(points):
                mlflow.log_metric("loss", 1.0 / (step + 1), step=step)
            mlflow.log_metrics({"accuracy": index / 16, "epoch": 1.0}, step=points)
            return run.info.run_id, repr(mlflow.MlflowClient()._tracker)

    fastflow.set_experiment("ray-tasks")
    with fastflow.start_run(run_name="driver") as parent:
        results = ray.get([train.remote(i) for i in range(16)])
    assert all(not tracker.startswith("FunnelTracker") for _, tracker in results)

    runs = {r.info.run_id: r for r in _runs(mlflow, db_uri, "ray-tasks")}
    assert len(runs) == 17
    assert runs[parent.info.run_id].info.status == "FINISHED"
    oracle = mlflow.MlflowClient(tracking_uri=db_uri)
    for index, (run_id, _) in enumerate(results):
        run = runs[run_id]
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert run.data.tags["mlflow.runName"] == f"task-{index}"
        assert run.info.status == "FINISHED"
        assert run.info.experiment_id == parent.info.experiment_id
        assert run.data.params == {"index": str(index)}
        assert run.data.metrics["accuracy"] == index / 16
        assert run.data.metrics["loss"] == 1.0 / points
        assert _steps(oracle, run_id, "loss") == list(range(points))


def test_parent_run_id_and_resumed_runs_behave_as_in_mlflow(db_uri, ray_cluster, mlflow):
    ray = ray_cluster

    @ray.remote
    def child_of(parent_run_id):
        import fastflow as mlflow

        with mlflow.start_run(parent_run_id=parent_run_id) as run:
            mlflow.log_metric("m", 1.0)
            return run.info.run_id

    @ray.remote
    def resume(run_id):
        import fastflow as mlflow

        with mlflow.start_run(run_id=run_id, nested=True):
            mlflow.log_metric("resumed", 2.0)

    @ray.remote
    def top_level():
        import fastflow as mlflow

        with mlflow.start_run() as run:
            return run.info.run_id

    other = fastflow.MlflowClient().create_run("0", run_name="other-parent")
    with fastflow.start_run(run_name="driver") as driver_run:
        explicit = ray.get(child_of.remote(other.info.run_id))
        ray.get(resume.remote(other.info.run_id))
        plain = ray.get(top_level.remote())

    oracle = mlflow.MlflowClient(tracking_uri=db_uri)
    assert oracle.get_run(explicit).data.tags["mlflow.parentRunId"] == other.info.run_id
    resumed = oracle.get_run(other.info.run_id)
    assert resumed.data.metrics["resumed"] == 2.0
    assert resumed.info.status == "FINISHED"
    assert "mlflow.parentRunId" not in oracle.get_run(plain).data.tags
    assert oracle.get_run(plain).info.experiment_id == driver_run.info.experiment_id


def test_funnel_actor_loses_nothing_even_when_a_worker_raises(
    db_uri, ray_cluster, mlflow, monkeypatch
):
    """Workers log through the driver's funnel actor instead of opening the store."""
    ray = ray_cluster
    monkeypatch.setenv("FASTFLOW_RAY_FUNNEL", "always")
    points = 20_000

    @ray.remote
    def train(index, fail_at):
        import fastflow as mlflow

        with mlflow.start_run(nested=True, run_name=f"funnel-{index}") as run:
            mlflow.log_params({"index": index, "fail_at": fail_at})
            mlflow.set_tag("worker", "task")
            for step in range(points):
                if step == fail_at:
                    raise RuntimeError(f"worker {index} fails at step {step}")
                mlflow.log_metric("loss", float(step), step=step)
            mlflow.MlflowClient().log_batch(
                run.info.run_id,
                metrics=[mlflow.entities.Metric("final", float(index), 0, points)],
            )
            return run.info.run_id, repr(mlflow.MlflowClient()._tracker)

    @ray.remote
    class Learner:
        def __init__(self):
            import fastflow as mlflow

            self.mlflow = mlflow
            self.run = mlflow.start_run(nested=True, run_name="learner-actor")
            self.step = 0

        def learn(self, n):
            for _ in range(n):
                self.mlflow.log_metric("reward", float(self.step), step=self.step)
                self.step += 1
            return self.step

        def finish(self):
            self.mlflow.end_run()
            return self.run.info.run_id

    fastflow.set_experiment("ray-funnel")
    with fastflow.start_run(run_name="driver") as parent:
        tasks = [train.remote(i, points // 2 if i == 3 else -1) for i in range(8)]
        learner = Learner.remote()
        ray.get([learner.learn.remote(1_000) for _ in range(10)])
        learner_run = ray.get(learner.finish.remote())
        finished, failure = {}, None
        for index, ref in enumerate(tasks):
            try:
                finished[index] = ray.get(ref)
            except ray.exceptions.RayTaskError as e:
                failure = (index, e)
    assert failure is not None and failure[0] == 3
    assert "fails at step" in str(failure[1])
    assert all(tracker.startswith("FunnelTracker") for _, tracker in finished.values())

    runs = {r.data.tags["mlflow.runName"]: r for r in _runs(mlflow, db_uri, "ray-funnel")}
    oracle = mlflow.MlflowClient(tracking_uri=db_uri)
    for index in range(8):
        run = runs[f"funnel-{index}"]
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert run.data.tags["worker"] == "task"
        assert run.data.params["index"] == str(index)
        if index == 3:
            assert run.info.status == "FAILED"
            assert _steps(oracle, run.info.run_id, "loss") == list(range(points // 2))
        else:
            assert run.info.status == "FINISHED"
            assert _steps(oracle, run.info.run_id, "loss") == list(range(points))
            assert run.data.metrics["final"] == float(index)
    actor_run = oracle.get_run(learner_run)
    assert actor_run.data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert actor_run.info.status == "FINISHED"
    assert _steps(oracle, learner_run, "reward") == list(range(10_000))


def test_funnel_reports_bad_input_at_the_call_site(db_uri, ray_cluster, mlflow, monkeypatch):
    ray = ray_cluster
    monkeypatch.setenv("FASTFLOW_RAY_FUNNEL", "always")

    @ray.remote
    def misuse():
        import fastflow as mlflow
        from fastflow.entities import Metric, Param

        errors = []
        with mlflow.start_run(nested=True) as run:
            mlflow.log_param("p", 1)
            client = mlflow.MlflowClient()
            for call in (
                lambda: mlflow.log_metric("bad key!", 1.0),
                lambda: mlflow.log_metric("m", "not a number"),
                lambda: mlflow.log_param("p", 2),
                lambda: client.log_batch(
                    run.info.run_id,
                    metrics=[Metric("bad key!", 1.0, 0, 0)],
                    params=[Param("never", "written")],
                ),
            ):
                try:
                    call()
                except mlflow.MlflowException as e:
                    errors.append(e.error_code)
            mlflow.log_metric("good", 1.0)
        return errors, run.info.run_id

    with fastflow.start_run():
        codes, run_id = ray.get(misuse.remote())
    assert codes == ["INVALID_PARAMETER_VALUE"] * 4
    run = mlflow.MlflowClient(tracking_uri=db_uri).get_run(run_id)
    assert run.data.params == {"p": "1"}
    assert run.data.metrics == {"good": 1.0}
    assert run.info.status == "FINISHED"


def test_tune_callback_logs_a_parent_and_a_child_per_trial(db_uri, ray_cluster, mlflow, tmp_path):
    from ray import tune

    # Defined here so that Ray ships the function itself: workers cannot import this module.
    def trainable(config):
        for iteration in range(1, 6):
            if config["lr"] == 0.4 and iteration == 3:
                raise ValueError("diverged")
            tune.report({"score": config["lr"] * iteration, "nested": {"loss": 1.0 / iteration}})

    lrs = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]
    tuner = tune.Tuner(
        trainable,
        param_space={"lr": tune.grid_search(lrs), "model": {"depth": 3}},
        run_config=tune.RunConfig(
            callbacks=[
                MLflowLoggerCallback(
                    experiment_name="sweep", tags={"team": "ml"}, save_artifact=True
                )
            ],
            storage_path=str(tmp_path / "ray_results"),
            verbose=0,
        ),
    )
    tuner.fit()

    runs = _runs(mlflow, db_uri, "sweep")
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1 and len(children) == 8
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["team"] == "ml"
    oracle = mlflow.MlflowClient(tracking_uri=db_uri)
    for child in children:
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert child.data.tags["trial_name"] == child.info.run_name
        lr = float(child.data.params["lr"])
        assert child.data.params["model/depth"] == "3"
        history = oracle.get_metric_history(child.info.run_id, "score")
        expected_iterations = [1, 2] if lr == 0.4 else [1, 2, 3, 4, 5]
        assert sorted(m.step for m in history) == expected_iterations
        assert {m.step: m.value for m in history} == {i: lr * i for i in expected_iterations}
        assert _steps(oracle, child.info.run_id, "nested/loss") == expected_iterations
        assert child.info.status == ("FAILED" if lr == 0.4 else "FINISHED")
        # save_artifact=True: the trial's directory, as MLflow's client lists it.
        logged = {f.path for f in oracle.list_artifacts(child.info.run_id)}
        assert {"params.json", "result.json"} <= logged, logged


def test_setup_mlflow_logs_child_runs_of_the_driver_run(db_uri, ray_cluster, mlflow, tmp_path):
    from ray import tune

    def trainable(config):
        mlflow = setup_mlflow(config)
        for iteration in range(1, 4):
            mlflow.log_metric("acc", config["width"] * iteration, step=iteration)
            tune.report({"acc": config["width"] * iteration})

    fastflow.set_experiment("trainables")
    with fastflow.start_run(run_name="driver") as parent:
        tune.Tuner(
            trainable,
            param_space={"width": tune.grid_search([1, 2, 3, 4])},
            run_config=tune.RunConfig(storage_path=str(tmp_path / "ray_results"), verbose=0),
        ).fit()
    fastflow.flush()

    runs = _runs(mlflow, db_uri, "trainables")
    children = [r for r in runs if r.info.run_id != parent.info.run_id]
    assert len(children) == 4
    oracle = mlflow.MlflowClient(tracking_uri=db_uri)
    for child in children:
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
        width = int(child.data.params["width"])
        assert child.data.tags["trial_name"] == child.info.run_name
        history = oracle.get_metric_history(child.info.run_id, "acc")
        assert {m.step: m.value for m in history} == {i: width * i for i in (1, 2, 3)}
        assert child.info.status == "FINISHED"


def test_runtime_env_pins_a_parent(db_uri, ray_cluster, mlflow):
    ray = ray_cluster
    from fastflow.ray import runtime_env

    @ray.remote
    def child():
        import fastflow as mlflow

        with mlflow.start_run(nested=True) as run:
            return run.info.run_id

    pinned = fastflow.MlflowClient().create_run("0", run_name="pinned")
    with fastflow.start_run():
        run_id = ray.get(
            child.options(runtime_env=runtime_env(parent_run_id=pinned.info.run_id)).remote()
        )
    tags = mlflow.MlflowClient(tracking_uri=db_uri).get_run(run_id).data.tags
    assert tags["mlflow.parentRunId"] == pinned.info.run_id


@pytest.fixture(autouse=True)
def _no_stale_context():
    yield
    fastflow.ray._hooks.publish(None)


def test_a_child_forked_from_a_ray_driver_logs_without_touching_ray(db_uri, ray_cluster, mlflow):
    """Ray's client state does not survive fork(); a child that asked Ray for the driver's
    context would wait forever, so it logs to its own store as any forked child does."""
    import os
    import time

    with fastflow.start_run():
        fastflow.log_metric("driver", 1.0)
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child
            code = 1
            try:
                with fastflow.start_run(run_name="forked"):
                    for step in range(500):
                        fastflow.log_metric("m", float(step), step=step)
                code = 0
            finally:
                os._exit(code)
        deadline = time.time() + 60
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            if time.time() > deadline:
                os.kill(pid, 9)
                os.waitpid(pid, 0)
                pytest.fail("the forked child hung")
            time.sleep(0.05)
    assert os.waitstatus_to_exitcode(status) == 0
    oracle = mlflow.MlflowClient(tracking_uri=db_uri)
    [forked] = oracle.search_runs(["0"], filter_string="attributes.run_name = 'forked'")
    assert len(oracle.get_metric_history(forked.info.run_id, "m")) == 500
