"""Columnar and sampled metric history, checked against what MLflow's client reads from the
same store."""

from __future__ import annotations

import math

import fastflow
import mlflow
import numpy as np
import pytest
from fastflow.exceptions import MlflowException


@pytest.fixture
def logged(tmp_path):
    """A run with a long wavy series holding NaN and infinities, a short one and a
    float-stepped one written by MLflow itself."""
    uri = f"sqlite:///{tmp_path / 'history.db'}"
    client = fastflow.MlflowClient(uri)
    run_id = client.create_run("0").info.run_id
    values = [math.sin(i / 50.0) * (1 + i % 7) for i in range(20_000)]
    values[1234] = 1e9
    values[15000] = -1e9
    values[500] = float("nan")
    values[900] = float("inf")
    values[901] = float("-inf")
    metrics = [fastflow.entities.Metric("wave", v, 1_000 + i // 3, i) for i, v in enumerate(values)]
    for start in range(0, len(metrics), 1000):
        client.log_batch(run_id, metrics=metrics[start : start + 1000])
    client.log_metric(run_id, "short", 2.0, timestamp=5, step=1)
    client.log_metric(run_id, "short", 1.0, timestamp=5, step=0)
    client.set_terminated(run_id)
    return uri, run_id, values


def _mlflow_history(uri, run_id, key):
    return mlflow.MlflowClient(uri).get_metric_history(run_id, key)


def _same(a, b):
    return (math.isnan(a) and math.isnan(b)) or a == b


def test_columns_hold_what_mlflow_reads_in_its_order(logged):
    uri, run_id, _ = logged
    client = fastflow.MlflowClient(uri)
    for key in ("wave", "short"):
        theirs = _mlflow_history(uri, run_id, key)
        columns = client.get_metric_history(run_id, key, output_format="numpy")
        assert columns["timestamp"].dtype == np.int64 and columns["step"].dtype == np.int64
        assert columns["timestamp"].tolist() == [m.timestamp for m in theirs]
        assert columns["step"].tolist() == [m.step for m in theirs]
        assert all(_same(a, m.value) for a, m in zip(columns["value"].tolist(), theirs))
        frame = fastflow.MlflowClient(uri).get_metric_history(run_id, key, output_format="pandas")
        assert list(frame.columns) == ["timestamp", "step", "value"]
        assert frame["step"].tolist() == [m.step for m in theirs]
        ours = client.get_metric_history(run_id, key)
        assert [(m.timestamp, m.step) for m in ours] == [(m.timestamp, m.step) for m in theirs]


def test_the_fluent_frame_reads_the_current_store(logged):
    uri, run_id, values = logged
    fastflow.set_tracking_uri(uri)
    try:
        frame = fastflow.get_metric_history_frame(run_id, "wave")
    finally:
        fastflow.set_tracking_uri(None)
    assert len(frame) == len(values)
    theirs = _mlflow_history(uri, run_id, "wave")
    assert frame["value"].max() == max(m.value for m in theirs if not math.isnan(m.value))


def test_a_float_step_written_by_mlflow_gives_float_columns(tmp_path):
    uri = f"sqlite:///{tmp_path / 'floats.db'}"
    theirs = mlflow.MlflowClient(uri)
    run_id = theirs.create_run("0").info.run_id
    theirs.log_metric(run_id, "m", 1.0, timestamp=10, step=0)
    theirs.log_metric(run_id, "m", 2.0, timestamp=11, step=1)
    columns = fastflow.MlflowClient(uri).get_metric_history(run_id, "m", output_format="numpy")
    assert columns["step"].tolist() == [0, 1]
    assert columns["value"].tolist() == [1.0, 2.0]


@pytest.mark.parametrize("budget", [320, 2000, 7])
def test_a_sample_keeps_the_curve_within_its_budget(logged, budget):
    uri, run_id, values = logged
    sample = fastflow.MlflowClient(uri).get_metric_history_sampled(run_id, "wave", budget)
    theirs = {(m.step, m.timestamp): m.value for m in _mlflow_history(uri, run_id, "wave")}
    assert len(sample) <= budget
    steps = [m.step for m in sample]
    assert steps == sorted(steps) and len(set(steps)) == len(steps)
    # Every point kept is a point MLflow reads, unchanged.
    assert all(_same(theirs[(m.step, m.timestamp)], m.value) for m in sample)
    kept = [m.value for m in sample]
    # MLflow stores an infinity as the largest float of its sign: those are the extremes.
    numbers = [v for v in theirs.values() if not math.isnan(v)]
    assert max(numbers) == 1.7976931348623157e308 and max(numbers) in kept
    assert min(numbers) in kept
    if budget >= 320:
        assert steps[0] == 0 and steps[-1] == len(values) - 1
        assert 1e9 in kept and -1e9 in kept
        assert any(math.isnan(v) for v in kept)


def test_a_sample_keeps_to_its_step_range(logged):
    uri, run_id, values = logged
    sample = fastflow.get_metric_history_sampled  # the fluent form, on the client's store
    fastflow.set_tracking_uri(uri)
    try:
        inside = sample(run_id, "wave", max_points=100, start_step=1000, end_step=1999)
        short = sample(run_id, "short")
    finally:
        fastflow.set_tracking_uri(None)
    assert 0 < len(inside) <= 100
    assert all(1000 <= m.step <= 1999 for m in inside)
    assert 1e9 in [m.value for m in inside]
    assert [(m.step, m.value) for m in short] == [(0, 1.0), (1, 2.0)]


@pytest.mark.parametrize("bad", [0, -5, 2.5, True, "10"])
def test_a_bad_budget_is_refused(logged, bad):
    uri, run_id, _ = logged
    with pytest.raises(MlflowException) as raised:
        fastflow.MlflowClient(uri).get_metric_history_sampled(run_id, "wave", bad)
    assert raised.value.error_code == "INVALID_PARAMETER_VALUE"


def test_an_unknown_output_format_is_refused(logged):
    uri, run_id, _ = logged
    with pytest.raises(MlflowException, match="Unsupported output format"):
        fastflow.MlflowClient(uri).get_metric_history(run_id, "wave", output_format="arrow")


def test_the_lazy_history_behaves_as_the_list_mlflow_returns(logged):
    uri, run_id, _ = logged
    theirs = _mlflow_history(uri, run_id, "wave")
    history = fastflow.MlflowClient(uri).get_metric_history(run_id, "wave")
    assert isinstance(history, fastflow.entities.MetricHistory)
    assert len(history) == len(theirs)

    def fields(metrics):
        return [(m.key, m.timestamp, m.step, m.value) for m in metrics]

    def same(ours, their):
        return len(ours) == len(their) and all(
            a[:3] == b[:3] and _same(a[3], b[3]) for a, b in zip(fields(ours), fields(their))
        )

    assert same(history, theirs)
    assert same([history[0], history[-1], history[777]], [theirs[0], theirs[-1], theirs[777]])
    assert same(history[10:20], theirs[10:20]) and same(history[::-500], theirs[::-500])
    assert same(list(reversed(history)), list(reversed(theirs)))
    with pytest.raises(IndexError):
        history[len(theirs)]
    short = fastflow.MlflowClient(uri).get_metric_history(run_id, "short")
    assert same(short, _mlflow_history(uri, run_id, "short")) and short == list(short)
    assert short[0] in short and short.index(short[1]) == 1 and short.count(short[0]) == 1
    assert short + [] == list(short) and [] + short == list(short)
    # A change turns it into a list; everything still works.
    short.append(short[0])
    short.sort(key=lambda m: -m.step)
    assert [m.step for m in short] == [1, 0, 0]
    del short[0]
    assert len(short) == 2
    import pickle

    restored = pickle.loads(pickle.dumps(history))
    assert type(restored) is list and same(restored, theirs)


def test_make_visible_lets_mlflow_read_without_a_flush(tmp_path):
    uri = f"sqlite:///{tmp_path / 'visible.db'}"
    fastflow.set_tracking_uri(uri)
    with fastflow.start_run() as run:
        for step in range(2000):
            fastflow.log_metric("m", float(step), step=step)
        fastflow.make_visible()
        seen = mlflow.MlflowClient(uri).get_metric_history(run.info.run_id, "m")
        assert [m.step for m in seen] == list(range(2000))
