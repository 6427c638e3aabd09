"""Runs through the fluent API: start, end, nest, resume, statuses, the active and last run."""

from scenario import scenario


def _info(run):
    return None if run is None else run.info


@scenario
def start_and_end_default(mlflow, call):
    run = call(mlflow.start_run)
    call(mlflow.active_run)
    call(mlflow.end_run)
    call(mlflow.active_run)
    call(mlflow.last_active_run)
    call(mlflow.get_run, run.info.run_id)


@scenario
def run_left_open_ends_at_exit(mlflow, call):
    call(mlflow.start_run, run_name="open")
    call(mlflow.log_metric, "m", 1.0)


@scenario
def context_manager_finishes(mlflow, call):
    with mlflow.start_run(run_name="ctx") as run:
        call(mlflow.log_param, "p", "v")
    call(mlflow.get_run, run.info.run_id)


@scenario
def context_manager_fails_on_exception(mlflow, call):
    try:
        with mlflow.start_run(run_name="boom") as run:
            raise ValueError("boom")
    except ValueError:
        pass
    call(mlflow.get_run, run.info.run_id)
    call(mlflow.active_run)


@scenario
def context_manager_keyboard_interrupt_is_killed(mlflow, call):
    try:
        with mlflow.start_run(run_name="interrupted") as run:
            raise KeyboardInterrupt
    except KeyboardInterrupt:
        pass
    call(mlflow.get_run, run.info.run_id)


@scenario(cases=["FINISHED", "FAILED", "KILLED", "RUNNING", "SCHEDULED", "finished", "BOGUS", ""])
def end_run_status(mlflow, call, status):
    run = call(mlflow.start_run)
    call(mlflow.end_run, status)
    call(mlflow.get_run, run.info.run_id)
    call(mlflow.active_run)


@scenario
def end_run_without_run(mlflow, call):
    call(mlflow.end_run)
    call(mlflow.active_run)
    call(mlflow.last_active_run)


@scenario
def second_start_without_nested_raises(mlflow, call):
    call(mlflow.start_run, run_name="first")
    call(mlflow.start_run, run_name="second")
    call(mlflow.active_run)


@scenario
def nested_runs_three_deep(mlflow, call):
    with mlflow.start_run(run_name="parent"):
        with mlflow.start_run(run_name="child", nested=True):
            with mlflow.start_run(run_name="grandchild", nested=True) as leaf:
                call(mlflow.active_run)
            call(mlflow.active_run)
        call(mlflow.get_parent_run, leaf.info.run_id)
    call(mlflow.last_active_run)


@scenario
def nested_without_parent_is_top_level(mlflow, call):
    run = call(mlflow.start_run, nested=True)
    call(mlflow.end_run)
    call(mlflow.get_parent_run, run.info.run_id)


@scenario
def parent_run_id_argument(mlflow, call):
    parent = call(mlflow.start_run, run_name="parent")
    call(mlflow.end_run)
    child = call(mlflow.start_run, run_name="child", parent_run_id=parent.info.run_id)
    call(mlflow.end_run)
    call(mlflow.get_parent_run, child.info.run_id)


@scenario
def parent_run_id_not_active_parent_raises(mlflow, call):
    parent = call(mlflow.start_run, run_name="parent")
    call(mlflow.end_run)
    call(mlflow.start_run, run_name="other")
    call(mlflow.start_run, nested=True, parent_run_id=parent.info.run_id)


@scenario
def parent_run_id_unknown_raises(mlflow, call):
    call(mlflow.start_run, parent_run_id="0" * 32)
    call(mlflow.active_run)


@scenario
def resume_finished_run(mlflow, call):
    with mlflow.start_run(run_name="first") as run:
        mlflow.log_metric("m", 1.0)
    resumed = call(mlflow.start_run, run_id=run.info.run_id)
    call(mlflow.log_metric, "m", 2.0, step=1)
    call(mlflow.end_run)
    call(mlflow.get_run, resumed.info.run_id)


@scenario
def resume_with_run_name_sets_name(mlflow, call):
    with mlflow.start_run(run_name="first") as run:
        pass
    call(mlflow.start_run, run_id=run.info.run_id, run_name="renamed")
    call(mlflow.end_run)
    call(mlflow.get_run, run.info.run_id)


@scenario
def resume_unknown_run_raises(mlflow, call):
    call(mlflow.start_run, run_id="f" * 32)
    call(mlflow.start_run, run_id="not-a-run-id")


@scenario
def resume_deleted_run_raises(mlflow, call):
    with mlflow.start_run() as run:
        pass
    call(mlflow.delete_run, run.info.run_id)
    call(mlflow.start_run, run_id=run.info.run_id)


@scenario
def resume_in_other_experiment_raises(mlflow, call):
    with mlflow.start_run() as run:
        pass
    other = call(mlflow.create_experiment, "other")
    call(mlflow.start_run, run_id=run.info.run_id, experiment_id=other)


@scenario(cases={"plain": "a run", "unicode": "прогон 🚀", "empty": "", "long": "n" * 300})
def run_names(mlflow, call, name):
    run = call(mlflow.start_run, run_name=name)
    call(mlflow.end_run)
    call(mlflow.get_run, run.info.run_id)


@scenario
def run_name_from_tag(mlflow, call):
    run = call(mlflow.start_run, tags={"mlflow.runName": "from-tag"})
    call(mlflow.end_run)
    call(mlflow.get_run, run.info.run_id)


@scenario
def run_name_argument_and_tag(mlflow, call):
    run = call(mlflow.start_run, run_name="arg", tags={"mlflow.runName": "tag"})
    call(mlflow.end_run)
    call(mlflow.get_run, run.info.run_id)


@scenario
def set_run_name_tag_renames(mlflow, call):
    with mlflow.start_run(run_name="before") as run:
        call(mlflow.set_tag, "mlflow.runName", "after")
    call(mlflow.get_run, run.info.run_id)


@scenario
def start_run_tags_and_description(mlflow, call):
    run = call(
        mlflow.start_run, tags={"team": "vision", "n": 3, "f": 1.5}, description="a description"
    )
    call(mlflow.end_run)
    call(mlflow.get_run, run.info.run_id)


@scenario(cases={"none": None, "empty": {}, "bad_key": {"bad key!": "v"}})
def start_run_tag_edge_cases(mlflow, call, tags):
    run = call(mlflow.start_run, tags=tags)
    call(mlflow.end_run)
    if run is not None:
        call(mlflow.get_run, run.info.run_id)


@scenario
def start_run_experiment_id_argument(mlflow, call):
    exp = call(mlflow.create_experiment, "chosen")
    run = call(mlflow.start_run, experiment_id=exp)
    call(mlflow.end_run)
    call(mlflow.get_run, run.info.run_id)


@scenario(cases={"missing": "12345", "word": "abc", "int": 0})
def start_run_experiment_id_edge_cases(mlflow, call, experiment_id):
    call(mlflow.start_run, experiment_id=experiment_id)
    call(mlflow.end_run)


@scenario
def start_run_in_deleted_experiment_raises(mlflow, call):
    exp = call(mlflow.create_experiment, "gone")
    call(mlflow.delete_experiment, exp)
    call(mlflow.start_run, experiment_id=exp)


@scenario
def active_run_fields(mlflow, call):
    with mlflow.start_run(run_name="fields"):
        run = call(mlflow.active_run)
        call(lambda: run.info.run_id == run.info.run_uuid)
        call(lambda: run.info.lifecycle_stage)
        call(lambda: run.info.artifact_uri)
        call(lambda: (run.data.metrics, run.data.params, run.data.tags))


@scenario
def last_active_run_after_failure(mlflow, call):
    try:
        with mlflow.start_run(run_name="failing"):
            mlflow.log_metric("m", 3.0)
            raise RuntimeError
    except RuntimeError:
        pass
    call(mlflow.last_active_run)


@scenario
def delete_and_restore_run(mlflow, call):
    with mlflow.start_run() as run:
        pass
    call(mlflow.delete_run, run.info.run_id)
    call(mlflow.get_run, run.info.run_id)
    call(mlflow.restore_run, run.info.run_id)
    call(mlflow.get_run, run.info.run_id)


@scenario
def delete_active_run(mlflow, call):
    run = call(mlflow.start_run)
    call(mlflow.delete_run, run.info.run_id)
    call(mlflow.log_metric, "m", 1.0)
    call(mlflow.end_run)
    call(mlflow.get_run, run.info.run_id)


@scenario(cases={"unknown": "0" * 32, "malformed": "xyz", "empty": ""})
def delete_and_restore_unknown(mlflow, call, run_id):
    call(mlflow.delete_run, run_id)
    call(mlflow.restore_run, run_id)
    call(mlflow.get_run, run_id)


@scenario
def delete_run_twice(mlflow, call):
    with mlflow.start_run() as run:
        pass
    call(mlflow.delete_run, run.info.run_id)
    call(mlflow.delete_run, run.info.run_id)
    call(mlflow.restore_run, run.info.run_id)
    call(mlflow.restore_run, run.info.run_id)


@scenario
def get_parent_run_of_top_level(mlflow, call):
    with mlflow.start_run() as run:
        pass
    call(mlflow.get_parent_run, run.info.run_id)


@scenario
def many_sequential_runs(mlflow, call):
    for i in range(5):
        with mlflow.start_run(run_name=f"r{i}"):
            mlflow.log_metric("i", i)
    call(mlflow.last_active_run)


@scenario
def end_nested_parent_first(mlflow, call):
    call(mlflow.start_run, run_name="parent")
    call(mlflow.start_run, run_name="child", nested=True)
    call(mlflow.end_run)
    call(mlflow.active_run)
    call(mlflow.end_run)
    call(mlflow.active_run)
