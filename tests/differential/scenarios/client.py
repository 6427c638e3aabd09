"""MlflowClient: runs, statuses, batches around the limits, history, search and paging."""

import math

from scenario import scenario


def _entities(mlflow):
    entities = mlflow.entities
    return entities.Metric, entities.Param, entities.RunTag


@scenario
def client_create_run_and_get(mlflow, call):
    client = mlflow.MlflowClient()
    run = call(client.create_run, "0", tags={"a": "1"}, run_name="made")
    call(client.get_run, run.info.run_id)
    call(lambda: client.tracking_uri.startswith("sqlite:"))


@scenario(
    cases={
        "start_time": {"start_time": 12345},
        "tag_name": {"tags": {"mlflow.runName": "tagged"}},
        "both_names_differ": {"tags": {"mlflow.runName": "a"}, "run_name": "b"},
        "both_names_same": {"tags": {"mlflow.runName": "a"}, "run_name": "a"},
        "user_tag": {"tags": {"mlflow.user": "alice"}},
        "int_experiment": {"experiment_id": 0},
        "missing_experiment": {"experiment_id": "999"},
    }
)
def client_create_run_arguments(mlflow, call, arguments):
    client = mlflow.MlflowClient()
    arguments = dict(arguments)
    experiment_id = arguments.pop("experiment_id", "0")
    run = call(client.create_run, experiment_id, **arguments)
    if run is not None:
        call(client.get_run, run.info.run_id)


@scenario(cases=["FINISHED", "FAILED", "KILLED", "RUNNING", "SCHEDULED", "BAD"])
def client_set_terminated(mlflow, call, status):
    client = mlflow.MlflowClient()
    run = client.create_run("0")
    call(client.set_terminated, run.info.run_id, status)
    call(client.get_run, run.info.run_id)


@scenario
def client_set_terminated_end_time(mlflow, call):
    client = mlflow.MlflowClient()
    run = client.create_run("0")
    call(client.set_terminated, run.info.run_id, end_time=5000)
    call(client.get_run, run.info.run_id)
    call(client.set_terminated, "0" * 32)


@scenario(
    cases={
        "status": {"status": "FAILED"},
        "name": {"name": "renamed"},
        "both": {"status": "KILLED", "name": "both"},
        "nothing": {},
        "bad_status": {"status": "NOPE"},
    }
)
def client_update_run(mlflow, call, arguments):
    client = mlflow.MlflowClient()
    run = client.create_run("0", run_name="original")
    call(client.update_run, run.info.run_id, **arguments)
    call(client.get_run, run.info.run_id)


@scenario
def client_delete_restore_run(mlflow, call):
    client = mlflow.MlflowClient()
    run = client.create_run("0")
    call(client.delete_run, run.info.run_id)
    call(client.get_run, run.info.run_id)
    call(client.restore_run, run.info.run_id)
    call(client.get_run, run.info.run_id)


@scenario
def client_experiments(mlflow, call):
    client = mlflow.MlflowClient()
    exp_id = call(client.create_experiment, "c", artifact_location=None, tags={"t": "1"})
    call(client.get_experiment, exp_id)
    call(client.get_experiment_by_name, "c")
    call(client.delete_experiment, exp_id)
    call(client.restore_experiment, exp_id)
    call(client.get_experiment, "404")


def _batch(mlflow, n_metrics, n_params, n_tags, *, ts=1000):
    metric, param, tag = _entities(mlflow)
    return (
        [metric(f"m{i % 7}", float(i), ts + i, i) for i in range(n_metrics)],
        [param(f"p{i}", str(i)) for i in range(n_params)],
        [tag(f"t{i}", str(i)) for i in range(n_tags)],
    )


BATCH_SIZES = {
    "empty": (0, 0, 0),
    "one_each": (1, 1, 1),
    "metrics_at_limit": (1000, 0, 0),
    "metrics_over_limit": (1001, 0, 0),
    "params_at_limit": (0, 100, 0),
    "params_over_limit": (0, 101, 0),
    "tags_over_limit": (0, 0, 101),
    "entities_at_limit": (800, 100, 100),
    "entities_over_limit": (900, 100, 100),
    "large": (2000, 200, 200),
}


@scenario(cases=BATCH_SIZES)
def client_log_batch_sizes(mlflow, call, sizes):
    client = mlflow.MlflowClient()
    run = client.create_run("0")
    metrics, params, tags = _batch(mlflow, *sizes)
    call(client.log_batch, run.info.run_id, metrics=metrics, params=params, tags=tags)
    got = client.get_run(run.info.run_id)
    call.note("counts", [len(got.data.metrics), len(got.data.params), len(got.data.tags)])
    call.note("history", len(client.get_metric_history(run.info.run_id, "m0")))


@scenario(cases=[True, False])
def client_log_batch_synchronous(mlflow, call, synchronous):
    client = mlflow.MlflowClient()
    run = client.create_run("0")
    metrics, params, tags = _batch(mlflow, 3, 2, 2)
    done = call(
        client.log_batch,
        run.info.run_id,
        metrics=metrics,
        params=params,
        tags=tags,
        synchronous=synchronous,
    )
    if done is not None:
        call(done.wait)
    call(client.get_run, run.info.run_id)


@scenario
def client_log_batch_bad_entities(mlflow, call):
    metric, param, tag = _entities(mlflow)
    client = mlflow.MlflowClient()
    run = client.create_run("0")
    run_id = run.info.run_id
    call(client.log_batch, run_id, metrics=[metric("bad!", 1.0, 1, 0)])
    call(client.log_batch, run_id, params=[param("p", "1"), param("p", "2")])
    call(client.log_batch, run_id, params=[param("p", "1"), param("p", "1")])
    call(client.log_batch, run_id, tags=[tag("", "x")])
    call(client.log_batch, run_id, metrics=[metric("m", math.nan, 1, 0)])
    call(client.log_batch, run_id, metrics=[metric("m", None, 1, 0)])
    call(client.log_batch, run_id, params=[param("long", "v" * 6001)])
    call(client.log_batch, "0" * 32, metrics=[metric("m", 1.0, 1, 0)])
    call(client.get_run, run_id)


@scenario
def client_log_batch_changes_param(mlflow, call):
    _, param, _ = _entities(mlflow)
    client = mlflow.MlflowClient()
    run = client.create_run("0")
    client.log_param(run.info.run_id, "p", "1")
    call(client.log_batch, run.info.run_id, params=[param("q", "1"), param("p", "2")])
    call(client.get_run, run.info.run_id)


@scenario
def client_metric_history(mlflow, call):
    client = mlflow.MlflowClient()
    run = client.create_run("0")
    for step in (3, 1, 2, 2):
        client.log_metric(run.info.run_id, "m", step * 1.5, timestamp=100 + step, step=step)
    call(client.get_metric_history, run.info.run_id, "m")
    call(client.get_metric_history, run.info.run_id, "none")


@scenario
def client_get_parent_run(mlflow, call):
    client = mlflow.MlflowClient()
    parent = client.create_run("0")
    child = client.create_run("0", tags={"mlflow.parentRunId": parent.info.run_id})
    call(client.get_parent_run, child.info.run_id)
    call(client.get_parent_run, parent.info.run_id)


def _runs_to_search(mlflow):
    client = mlflow.MlflowClient()
    exp = client.create_experiment("search")
    rows = [
        ("a", 0.5, "adam", "FINISHED"),
        ("b", 0.1, "sgd", "FAILED"),
        ("c", float("nan"), "adam", "FINISHED"),
        ("d", None, "rms prop", "KILLED"),
        ("e", 0.3, None, "RUNNING"),
    ]
    for i, (name, loss, optimizer, status) in enumerate(rows):
        run = client.create_run(exp, run_name=name, start_time=1000 + i)
        if loss is not None:
            client.log_metric(run.info.run_id, "loss", loss, timestamp=10 + i, step=i)
        if optimizer is not None:
            client.log_param(run.info.run_id, "optimizer", optimizer)
        client.set_tag(run.info.run_id, "team", "vision" if i % 2 else "nlp")
        if status != "RUNNING":
            client.set_terminated(run.info.run_id, status, end_time=2000 + i)
        if name == "b":
            client.delete_run(run.info.run_id)
    return exp


RUN_SEARCHES = {
    "all": {},
    "metric_lt": {"filter_string": "metrics.loss < 0.4"},
    "metric_eq_nan": {"filter_string": "metrics.loss >= 0"},
    "param_eq": {"filter_string": "params.optimizer = 'adam'"},
    "param_like": {"filter_string": "params.optimizer LIKE '%prop'"},
    "param_in": {"filter_string": "params.optimizer IN ('adam', 'sgd')"},
    "tag_ilike": {"filter_string": "tags.team ILIKE 'VIS%'"},
    "status": {"filter_string": "attributes.status = 'FINISHED'"},
    "run_name": {"filter_string": "run_name = 'c'"},
    "param_is_null": {"filter_string": "params.optimizer IS NULL"},
    "and": {"filter_string": "metrics.loss > 0 and tags.team = 'nlp'"},
    "order_metric": {"order_by": ["metrics.loss ASC"]},
    "order_metric_desc": {"order_by": ["metrics.loss DESC"]},
    "order_param": {"order_by": ["params.optimizer"]},
    "order_start": {"order_by": ["attributes.start_time ASC"]},
    "order_two": {"order_by": ["tags.team", "metrics.loss DESC"]},
    "deleted": {"run_view_type": 2},
    "all_views": {"run_view_type": 3},
    "max_results": {"max_results": 2},
    "bad_filter": {"filter_string": "metrics.loss <"},
    "bad_key_type": {"filter_string": "foo.loss < 1"},
    "bad_order": {"order_by": ["metrics.loss UP"]},
    "whitespace": {"filter_string": "   "},
    "empty_filter": {"filter_string": ""},
    "list_output": {"output_format": "list"},
}


@scenario(cases=RUN_SEARCHES)
def search_runs(mlflow, call, arguments):
    exp = _runs_to_search(mlflow)
    call(mlflow.search_runs, experiment_ids=[exp], **arguments)


@scenario(cases=RUN_SEARCHES)
def client_search_runs(mlflow, call, arguments):
    arguments = {k: v for k, v in arguments.items() if k != "output_format"}
    exp = _runs_to_search(mlflow)
    call(mlflow.MlflowClient().search_runs, [exp], **arguments)


# Filters MLflow refuses or reads in a way of its own, each with MLflow's message.
RUN_FILTERS = [
    "metrics.loss",
    "metrics.loss < 1 AND",
    "metrics.loss 1",
    "< 1",
    "metrics.loss < 1 2",
    "params.optimizer = 'adam' OR params.optimizer = 'sgd'",
    "metrics.loss < 1 AND metrics.x",
    "metrics.loss >> 2",
    "tags.team = vision",
    "foo",
    "metrics.loss < 1 AND AND tags.team = 'nlp'",
    "attributes.nope = 'x'",
    "datasets.nope = 'x'",
    "params.optimizer > 'a'",
    "tags.team > 'a'",
    "attributes.status > 'x'",
    "attributes.start_time LIKE 1",
    "metrics.loss IN ('x')",
    "params.optimizer NOT IN ('adam')",
    "attributes.status IN ('FINISHED')",
    "attributes.run_id IN ()",
    "(metrics.loss > 0.1)",
    "metrics.loss > 0 AND (params.optimizer = 'adam')",
    "'adam' = params.optimizer",
    "metrics.loss > -1",
    "metrics.loss IS NULL",
    "metrics.loss = 'x'",
    "params.optimizer = 1",
]


@scenario(cases=RUN_FILTERS)
def client_search_runs_filter(mlflow, call, filter_string):
    exp = _runs_to_search(mlflow)
    call(mlflow.MlflowClient().search_runs, [exp], filter_string)


@scenario
def search_runs_by_experiment_name(mlflow, call):
    _runs_to_search(mlflow)
    call(mlflow.search_runs, experiment_names=["search"], order_by=["run_name"])
    call(mlflow.search_runs, experiment_names=["missing"])
    call(mlflow.search_runs, search_all_experiments=True, filter_string="run_name = 'a'")


@scenario
def search_runs_active_experiment(mlflow, call):
    mlflow.set_experiment("active")
    with mlflow.start_run(run_name="only"):
        mlflow.log_metric("m", 1.0)
    call(mlflow.search_runs)


@scenario
def search_runs_empty_store(mlflow, call):
    call(mlflow.search_runs)
    call(mlflow.search_runs, output_format="list")
    call(mlflow.search_runs, experiment_ids=["0"], output_format="pandas")


@scenario
def search_runs_many_clauses(mlflow, call):
    _runs_to_search(mlflow)
    clauses = " AND ".join(["metrics.loss > -1"] * 2001)
    call(mlflow.search_runs, search_all_experiments=True, filter_string=clauses)


@scenario
def client_search_runs_pages(mlflow, call):
    exp = _runs_to_search(mlflow)
    client = mlflow.MlflowClient()
    page = call(client.search_runs, [exp], max_results=2, order_by=["run_name"])
    while page is not None and page.token:
        page = call(
            client.search_runs, [exp], max_results=2, order_by=["run_name"], page_token=page.token
        )
    call(client.search_runs, [exp], page_token="not-a-token")


@scenario
def search_runs_columns_order(mlflow, call):
    with mlflow.start_run(run_name="cols"):
        mlflow.log_params({"z": 1, "a": 2})
        mlflow.log_metrics({"zeta": 1.0, "alpha": 2.0})
        mlflow.set_tags({"y": "1", "b": "2"})
    call(mlflow.search_runs)
