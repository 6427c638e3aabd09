"""Experiments: create, get, set, delete, restore, tags, search, and the environment."""

import time

from scenario import scenario

NAMES = {
    "plain": "exp",
    "spaces": "my experiment",
    "unicode": "эксперимент 🚀",
    "slash": "team/project",
    "empty": "",
    "none": None,
    "int": 5,
    "at_limit": "e" * 500,
    "over_limit": "e" * 501,
}


@scenario(cases=NAMES)
def create_experiment_name(mlflow, call, name):
    exp_id = call(mlflow.create_experiment, name)
    if exp_id is not None:
        call(mlflow.get_experiment, exp_id)


@scenario(cases=NAMES)
def set_experiment_name(mlflow, call, name):
    call(mlflow.set_experiment, name)
    with mlflow.start_run() as run:
        pass
    call(mlflow.get_run, run.info.run_id)


@scenario
def create_experiment_duplicate_name(mlflow, call):
    call(mlflow.create_experiment, "same")
    call(mlflow.create_experiment, "same")


@scenario
def create_experiment_name_of_deleted(mlflow, call):
    exp_id = call(mlflow.create_experiment, "gone")
    call(mlflow.delete_experiment, exp_id)
    call(mlflow.create_experiment, "gone")
    call(mlflow.set_experiment, "gone")


@scenario(
    cases={
        "relative": "artifacts-here",
        "absolute": "<cwd>/chosen",
        "file_uri": "file://<cwd>/uri",
        "empty": "",
    }
)
def create_experiment_artifact_location(mlflow, call, location):
    import os

    location = location.replace("<cwd>", os.getcwd())
    exp_id = call(mlflow.create_experiment, "located", artifact_location=location)
    call(mlflow.get_experiment, exp_id)
    with mlflow.start_run(experiment_id=exp_id) as run:
        pass
    call(mlflow.get_run, run.info.run_id)


@scenario(
    cases={
        "none": None,
        "empty": {},
        "two": {"b": "2", "a": 1},
        "bad_key": {"bad!": "x"},
        "long_value": {"k": "v" * 5001},
    }
)
def create_experiment_tags(mlflow, call, tags):
    exp_id = call(mlflow.create_experiment, "tagged", tags=tags)
    if exp_id is not None:
        call(mlflow.get_experiment, exp_id)


@scenario(cases={"zero": "0", "missing": "999", "word": "abc", "int": 0, "empty": ""})
def get_experiment_ids(mlflow, call, exp_id):
    call(mlflow.get_experiment, exp_id)


@scenario(cases={"default": "Default", "missing": "nope", "empty": "", "none": None})
def get_experiment_by_name(mlflow, call, name):
    call(mlflow.get_experiment_by_name, name)


@scenario
def set_experiment_by_id(mlflow, call):
    exp_id = mlflow.create_experiment("by-id")
    call(mlflow.set_experiment, experiment_id=exp_id)
    with mlflow.start_run() as run:
        pass
    call(mlflow.get_run, run.info.run_id)


@scenario
def set_experiment_by_unknown_id(mlflow, call):
    call(mlflow.set_experiment, experiment_id="4242")


@scenario
def set_experiment_both_and_neither(mlflow, call):
    call(mlflow.set_experiment, "x", experiment_id="0")
    call(mlflow.set_experiment)


@scenario
def set_experiment_deleted_raises(mlflow, call):
    exp_id = mlflow.create_experiment("deleted")
    mlflow.delete_experiment(exp_id)
    call(mlflow.set_experiment, "deleted")
    call(mlflow.set_experiment, experiment_id=exp_id)


@scenario
def set_experiment_while_run_active(mlflow, call):
    with mlflow.start_run() as run:
        call(mlflow.set_experiment, "later")
        call(mlflow.log_metric, "m", 1.0)
    with mlflow.start_run() as second:
        pass
    call(mlflow.get_run, run.info.run_id)
    call(mlflow.get_run, second.info.run_id)


@scenario
def delete_and_restore_experiment(mlflow, call):
    exp_id = mlflow.create_experiment("cycle")
    with mlflow.start_run(experiment_id=exp_id) as run:
        pass
    call(mlflow.delete_experiment, exp_id)
    call(mlflow.get_experiment, exp_id)
    call(mlflow.get_run, run.info.run_id)
    call(mlflow.delete_experiment, exp_id)
    call(mlflow.restore_experiment, exp_id)
    call(mlflow.restore_experiment, exp_id)
    call(mlflow.get_experiment_by_name, "cycle")


@scenario(cases={"default": "0", "missing": "999", "word": "abc"})
def delete_experiment_ids(mlflow, call, exp_id):
    call(mlflow.delete_experiment, exp_id)
    call(mlflow.restore_experiment, exp_id)


@scenario
def experiment_tags(mlflow, call):
    mlflow.set_experiment("tagged")
    call(mlflow.set_experiment_tag, "k", "v")
    call(mlflow.set_experiment_tag, "k", 2)
    call(mlflow.set_experiment_tags, {"a": 1, "b": None})
    call(mlflow.set_experiment_tag, "bad!", "v")
    call(mlflow.set_experiment_tag, "long", "v" * 5001)
    call(mlflow.get_experiment_by_name, "tagged")


@scenario
def experiment_tag_without_active_experiment(mlflow, call):
    call(mlflow.set_experiment_tag, "k", "v")
    call(mlflow.get_experiment, "0")


@scenario
def client_experiment_tags(mlflow, call):
    client = mlflow.MlflowClient()
    exp_id = client.create_experiment("c", tags={"x": "1"})
    call(client.set_experiment_tag, exp_id, "y", "2")
    call(client.set_experiment_tag, "999", "y", "2")
    call(client.get_experiment, exp_id)


@scenario(env={"MLFLOW_EXPERIMENT_NAME": "from-env"})
def experiment_name_from_environment(mlflow, call):
    with mlflow.start_run() as run:
        pass
    call(mlflow.get_run, run.info.run_id)
    call(mlflow.get_experiment_by_name, "from-env")


@scenario(env={"MLFLOW_EXPERIMENT_ID": "0"})
def experiment_id_from_environment(mlflow, call):
    with mlflow.start_run() as run:
        pass
    call(mlflow.get_run, run.info.run_id)


@scenario(env={"MLFLOW_EXPERIMENT_ID": "777"})
def experiment_id_from_environment_missing(mlflow, call):
    call(mlflow.start_run)


@scenario(env={"MLFLOW_EXPERIMENT_NAME": "env-name"})
def set_experiment_beats_environment(mlflow, call):
    mlflow.set_experiment("explicit")
    with mlflow.start_run() as run:
        pass
    call(mlflow.get_run, run.info.run_id)


def _some_experiments(mlflow):
    client = mlflow.MlflowClient()
    for i, name in enumerate(["alpha", "beta", "Gamma", "delta-x"]):
        exp_id = client.create_experiment(name, tags={"i": str(i), "team": "a" if i % 2 else "b"})
        if name == "beta":
            client.delete_experiment(exp_id)
        # Searches list the newest first and break ties by id: experiments created within
        # one millisecond would come out in an order that rests on the clock, not the tool.
        time.sleep(0.002)


SEARCHES = {
    "all": {},
    "deleted_only": {"view_type": 2},
    "all_views": {"view_type": 3},
    "name_like": {"filter_string": "name LIKE 'a%'"},
    "name_ilike": {"filter_string": "name ILIKE '%A%'"},
    "name_eq": {"filter_string": "name = 'Gamma'"},
    "tag": {"filter_string": "tags.team = 'a'"},
    "tag_and_name": {"filter_string": "tags.team = 'b' AND name != 'alpha'"},
    "order_name": {"order_by": ["name ASC"]},
    "order_name_desc": {"order_by": ["name DESC"]},
    "order_id": {"order_by": ["experiment_id DESC"]},
    "max_results": {"max_results": 2},
    "bad_filter": {"filter_string": "nonsense ="},
    "bad_order": {"order_by": ["tags.team"]},
    "zero_results": {"max_results": 0},
    "whitespace_filter": {"filter_string": "   "},
}


EXPERIMENT_FILTERS = [
    "name",
    "name =",
    "name = 'alpha' AND",
    "tags.team",
    "nope = 'x'",
    "name > 'x'",
    "creation_time LIKE 5",
    "creation_time > 5",
    "tags.team >> 'x'",
    "name IN ('alpha')",
    "experiment_id > '1'",
    "experiment_id IN ('1')",
    "tags.team IS NULL",
    "name IS NULL",
    "metrics.a > 1",
]


@scenario(cases=EXPERIMENT_FILTERS)
def client_search_experiments_filter(mlflow, call, filter_string):
    _some_experiments(mlflow)
    call(mlflow.MlflowClient().search_experiments, view_type=3, filter_string=filter_string)


@scenario(cases=SEARCHES)
def search_experiments(mlflow, call, arguments):
    _some_experiments(mlflow)
    call(mlflow.search_experiments, **arguments)


@scenario
def client_search_experiments_pages(mlflow, call):
    _some_experiments(mlflow)
    client = mlflow.MlflowClient()
    page = call(client.search_experiments, max_results=2, view_type=3)
    while page is not None and page.token:
        page = call(client.search_experiments, max_results=2, view_type=3, page_token=page.token)
