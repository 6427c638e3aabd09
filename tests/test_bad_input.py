"""Bad input raises MLflow's MlflowException (code and message) and loses nothing logged."""

import fastflow
import pytest
from fastflow.exceptions import MlflowException

INVALID = "INVALID_PARAMETER_VALUE"
MISSING = "RESOURCE_DOES_NOT_EXIST"


@pytest.fixture
def run_with_data(db_uri):
    run = fastflow.start_run()
    fastflow.log_param("kept", "1")
    fastflow.set_tag("kept", "yes")
    for step in range(100):
        fastflow.log_metric("kept", float(step), step=step)
    yield run
    fastflow.end_run()


def _assert_earlier_data_kept(mlflow, db_uri, run_id):
    fastflow.flush()
    oracle = mlflow.MlflowClient(tracking_uri=db_uri)
    got = oracle.get_run(run_id)
    assert got.data.params["kept"] == "1"
    assert got.data.tags["kept"] == "yes"
    assert len(oracle.get_metric_history(run_id, "kept")) == 100


def _raises(code, call, *args, **kwargs):
    with pytest.raises(MlflowException) as info:
        call(*args, **kwargs)
    assert info.value.error_code == code, info.value.message
    return info.value.message


BAD_CHARS = (
    "Names may only contain alphanumerics, underscores (_), dashes (-), periods (.), "
    "spaces ( ), colon(:) and slashes (/)."
)


def test_invalid_key_names(run_with_data, mlflow, db_uri):
    message = _raises(INVALID, fastflow.log_metric, "a!b", 1.0)
    assert message == f"Invalid value \"a!b\" for parameter 'name' supplied: {BAD_CHARS}"
    message = _raises(INVALID, fastflow.log_metric, "../x", 1.0)
    assert message.endswith("This name would resolve to '../x'")
    message = _raises(INVALID, fastflow.log_metric, "/abs", 1.0)
    assert message.endswith("This name would resolve to '/abs'")
    message = _raises(INVALID, fastflow.log_metric, "k" * 251, 1.0)
    assert message == "'Metric name' exceeds the maximum length of 250 characters"
    message = _raises(INVALID, fastflow.log_param, "a!b", "1")
    assert message.startswith(f"Invalid value \"a!b\" for parameter 'key' supplied: {BAD_CHARS}")
    message = _raises(INVALID, fastflow.set_tag, "k" * 251, "1")
    assert message == "'key' exceeds the maximum length of 250 characters"
    message = _raises(INVALID, fastflow.log_metrics, {"ok": 1.0, "b@d": 2.0})
    assert "parameter 'metrics[1].name'" in message
    _assert_earlier_data_kept(mlflow, db_uri, run_with_data.info.run_id)


def test_metric_values_mlflow_refuses(run_with_data, mlflow, db_uri):
    # What float() takes is logged as a float, as MLflow's client converts it.
    fastflow.log_metric("m", True)
    fastflow.log_metric("m", "2.5", step=1)
    message = _raises(INVALID, fastflow.log_metric, "m", "abc")
    assert message.startswith("Invalid value \"abc\" for parameter 'value' supplied: (timestamp=")
    assert message.endswith("Please specify value as a valid double (64-bit floating point)")
    message = _raises(INVALID, fastflow.log_metric, "m", None)
    assert message == "Missing value for required parameter 'value'."
    message = _raises(INVALID, fastflow.log_metric, "m", 1.0, step="x")
    assert message == (
        "Invalid value \"x\" for parameter 'step' supplied: metric 'm' (value=1.0). "
        "Step must be a valid long (64-bit integer)."
    )
    with pytest.raises(TypeError, match="float\\(\\) argument must be"):
        fastflow.log_metric("m", [1.0])
    client = fastflow.MlflowClient()
    client.log_metric(run_with_data.info.run_id, "m", False, step=2)
    # Nothing of a dict with one bad value is logged.
    message = _raises(INVALID, fastflow.log_metrics, {"good": 1.0, "bad": "x"})
    assert "parameter 'metrics[1].value'" in message
    fastflow.flush()
    run_id = run_with_data.info.run_id
    assert fastflow.MlflowClient().get_metric_history(run_id, "good") == []
    history = mlflow.MlflowClient(tracking_uri=db_uri).get_metric_history(run_id, "m")
    assert sorted((m.step, m.value) for m in history) == [(0, 1.0), (1, 2.5), (2, 0.0)]
    _assert_earlier_data_kept(mlflow, db_uri, run_id)


def test_too_long_values(run_with_data, mlflow, db_uri, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRUNCATE_LONG_VALUES", "false")
    message = _raises(INVALID, fastflow.log_param, "long", "x" * 6001)
    assert message.startswith("'Param value' exceeds the maximum length of 6000 characters")
    message = _raises(INVALID, fastflow.set_tag, "long", "x" * 8001)
    assert message == "'value' exceeds the maximum length of 8000 characters"
    message = _raises(INVALID, fastflow.create_experiment, "e" * 501)
    assert message == "'name' exceeds the maximum length of 500 characters"
    monkeypatch.delenv("MLFLOW_TRUNCATE_LONG_VALUES")
    # MLflow's default truncates instead, with a warning.
    fastflow.log_param("long", "x" * 6001)
    assert len(fastflow.get_run(run_with_data.info.run_id).data.params["long"]) == 6000
    _assert_earlier_data_kept(mlflow, db_uri, run_with_data.info.run_id)


def test_param_change(run_with_data, mlflow, db_uri):
    run_id = run_with_data.info.run_id
    fastflow.log_param("kept", "1")
    message = _raises(INVALID, fastflow.log_param, "kept", "2")
    assert message.startswith(
        "Changing param values is not allowed. Param with key='kept' was already logged with "
        f"value='1' for run ID='{run_id}'. Attempted logging new value '2'."
    )
    message = _raises(INVALID, fastflow.log_params, {"kept": "3"})
    assert message == (
        "Changing param values is not allowed. Params were already logged="
        f"'[{{'key': 'kept', 'old_value': '1', 'new_value': '3'}}]' for run ID='{run_id}'."
    )
    _assert_earlier_data_kept(mlflow, db_uri, run_id)


def test_unknown_run_and_experiment_ids(run_with_data, mlflow, db_uri):
    client = fastflow.MlflowClient()
    unknown = "0123456789abcdef0123456789abcdef"
    message = _raises(MISSING, client.get_run, unknown)
    assert message == f"Run with id={unknown} not found"
    _raises(MISSING, client.log_metric, unknown, "m", 1.0)
    _raises(MISSING, client.log_param, unknown, "p", "1")
    _raises(MISSING, fastflow.log_metric, "m", 1.0, run_id=unknown)
    message = _raises(MISSING, client.get_experiment, "4242")
    assert message == "No Experiment with id=4242 exists"
    _raises(MISSING, client.create_run, "4242")
    message = _raises(INVALID, client.get_experiment, "abc")
    assert message == "Invalid experiment ID 'abc'. Experiment ID must be a valid integer."
    assert client.get_experiment_by_name("nope") is None
    _assert_earlier_data_kept(mlflow, db_uri, run_with_data.info.run_id)


def test_logging_to_deleted_run(run_with_data, mlflow, db_uri):
    client = fastflow.MlflowClient()
    other = client.create_run("0")
    client.log_metric(other.info.run_id, "before", 1.0)
    client.delete_run(other.info.run_id)
    expected = (
        f"The run {other.info.run_id} must be in the 'active' state. Current state is deleted."
    )
    assert _raises(INVALID, client.log_metric, other.info.run_id, "m", 1.0) == expected
    assert _raises(INVALID, client.set_tag, other.info.run_id, "t", "v") == expected
    assert _raises(INVALID, client.log_param, other.info.run_id, "p", "v").startswith(expected)
    _raises(INVALID, fastflow.log_metric, "m", 1.0, run_id=other.info.run_id)
    fastflow.flush()
    oracle = mlflow.MlflowClient(tracking_uri=db_uri)
    assert len(oracle.get_metric_history(other.info.run_id, "before")) == 1
    _assert_earlier_data_kept(mlflow, db_uri, run_with_data.info.run_id)


def test_deleted_elsewhere_surfaces_on_flush(run_with_data, mlflow, db_uri):
    """A run deleted by another client while points are queued: the points are held, the
    error surfaces on flush, and they are written once the run is restored."""
    run_id = run_with_data.info.run_id
    oracle = mlflow.MlflowClient(tracking_uri=db_uri)
    fastflow.flush()
    oracle.delete_run(run_id)
    fastflow.log_metric("late", 1.0)
    message = _raises(INVALID, fastflow.flush)
    assert "must be in the 'active' state" in message
    oracle.restore_run(run_id)
    fastflow.flush()
    assert len(oracle.get_metric_history(run_id, "late")) == 1
    _assert_earlier_data_kept(mlflow, db_uri, run_id)


def test_batch_over_limits(run_with_data, mlflow, db_uri):
    # One request to the store is limited as MLflow's store limits it...
    tracker = fastflow.MlflowClient()._tracker
    run_id = run_with_data.info.run_id
    metrics = [(f"m{i}", 1.0, 1, 0) for i in range(1001)]
    message = _raises(INVALID, tracker.log_batch, run_id, metrics, [], [])
    assert message == (
        "A batch logging request can contain at most 1000 metrics. Got 1001 metrics. "
        "Please split up metrics across multiple requests and try again."
    )
    params = [(f"p{i}", "1") for i in range(101)]
    assert "at most 100 params. Got 101 params" in _raises(
        INVALID, tracker.log_batch, run_id, [], params, []
    )
    assert "at most 100 tags" in _raises(INVALID, tracker.log_batch, run_id, [], [], params)
    message = _raises(INVALID, tracker.log_batch, run_id, metrics[:950], params[:100], [])
    assert "at most 1000 metrics, params, and tags. Got 1050" in message
    client = fastflow.MlflowClient()
    dupes = [fastflow.Param("d", "1"), fastflow.Param("d", "1")]
    message = _raises(INVALID, client.log_batch, run_id, params=dupes)
    assert message.startswith("Duplicate parameter keys have been submitted: ['d'].")
    fastflow.flush()
    assert fastflow.get_run(run_id).data.metrics.keys() == {"kept"}
    # ...and the client splits a larger batch into such requests, as MLflow's does.
    client.log_batch(
        run_id,
        metrics=[fastflow.Metric(f"m{i}", 1.0, 1, 0) for i in range(1001)],
        params=[fastflow.Param(f"p{i}", "1") for i in range(101)],
    )
    fastflow.flush()
    data = mlflow.MlflowClient(tracking_uri=db_uri).get_run(run_id).data
    assert len(data.metrics) == 1002 and len(data.params) == 102
    _assert_earlier_data_kept(mlflow, db_uri, run_id)


def test_fluent_state_errors(db_uri):
    with fastflow.start_run() as run:
        with pytest.raises(Exception, match=f"Run with UUID {run.info.run_id} is already active"):
            fastflow.start_run()
        with pytest.raises(Exception, match="Could not get run status"):
            fastflow.MlflowClient().set_terminated(run.info.run_id, "BAD")
    message = _raises(INVALID, fastflow.set_experiment)
    assert message == "Must specify exactly one of: `experiment_id` or `experiment_name`."
    experiment_id = fastflow.create_experiment("gone")
    fastflow.delete_experiment(experiment_id)
    message = _raises(INVALID, fastflow.set_experiment, "gone")
    assert message.startswith("Cannot set a deleted experiment 'gone' as the active experiment.")
    _raises("RESOURCE_ALREADY_EXISTS", fastflow.create_experiment, "gone")
