"""A run's inputs (datasets, logged models) and outputs (logged models), as real MLflow logs
them: fastflow's `get_run` returns what MLflow's returns, field by field and in the same
order, from a SQLite store and through a real `mlflow server`."""

import fastflow
import pandas as pd
import pytest
from fastflow.entities import (
    Dataset,
    DatasetInput,
    InputTag,
    LoggedModelInput,
    LoggedModelOutput,
    RunInputs,
    RunOutputs,
)
from remote_server import MlflowServer


@pytest.fixture
def mlflow_at(mlflow):
    """Points MLflow's fluent API at a store for one test, and back afterwards."""
    before = mlflow.get_tracking_uri()
    yield mlflow.set_tracking_uri
    while mlflow.active_run() is not None:
        mlflow.end_run()
    mlflow.set_tracking_uri(before)


class _Echo:
    """A pyfunc model with nothing to save beyond itself."""

    def predict(self, context, model_input):
        return model_input


def _log_with_mlflow(mlflow, uri):
    """Runs with several dataset inputs (tagged, untagged, without schema or profile),
    logged models as outputs at several steps, and a run that takes models as input.
    Returns the run ids."""
    from mlflow.entities import Dataset as MlflowDataset
    from mlflow.entities import DatasetInput as MlflowDatasetInput
    from mlflow.entities import InputTag as MlflowInputTag
    from mlflow.entities import LoggedModelInput as MlflowModelInput
    from mlflow.entities import LoggedModelOutput as MlflowModelOutput

    class Echo(_Echo, mlflow.pyfunc.PythonModel):
        pass

    frame = pd.DataFrame({"a": [1, 2, 3], "b": [0.5, 1.5, 2.5], "c": ["x", "y", "z"]})
    client = mlflow.MlflowClient(tracking_uri=uri)
    mlflow.set_experiment("io")
    with mlflow.start_run(run_name="trainer") as trainer:
        mlflow.log_input(
            mlflow.data.from_pandas(frame, name="train", targets="b"),
            context="train",
            tags={"split": "80%", "owner": "é"},
        )
        mlflow.log_input(mlflow.data.from_pandas(frame.head(1), name="eval"), context="eval")
        mlflow.log_param("lr", 0.1)
        first = mlflow.pyfunc.log_model(name="m1", python_model=Echo())
        second = mlflow.pyfunc.log_model(name="m2", python_model=Echo(), step=7)
        run_id = trainer.info.run_id
    # An input without tags, and a dataset without schema or profile.
    bare = MlflowDataset("bare", "d1g3st", "http", '{"url": "https://example.com/x.csv"}')
    client.log_inputs(
        run_id,
        datasets=[
            MlflowDatasetInput(bare),
            MlflowDatasetInput(
                MlflowDataset("tagged", "0ff1ce", "local", '{"uri": "/tmp/d"}', "{}", "{}"),
                [MlflowInputTag("k", "v")],
            ),
        ],
    )
    with mlflow.start_run(run_name="consumer") as consumer:
        pass
    client.log_outputs(consumer.info.run_id, [MlflowModelOutput(first.model_id, step=3)])
    client.log_inputs(
        consumer.info.run_id,
        datasets=[MlflowDatasetInput(bare)],
        models=[MlflowModelInput(second.model_id), MlflowModelInput(first.model_id)],
    )
    with mlflow.start_run(run_name="plain") as plain:
        pass
    return [run_id, consumer.info.run_id, plain.info.run_id]


def _plain(run):
    """A run's inputs and outputs as plain values, in their order."""
    return (
        [
            (
                (
                    d.dataset.name,
                    d.dataset.digest,
                    d.dataset.source_type,
                    d.dataset.source,
                    d.dataset.schema,
                    d.dataset.profile,
                ),
                [(t.key, t.value) for t in d.tags],
            )
            for d in run.inputs.dataset_inputs
        ],
        [m.model_id for m in run.inputs.model_inputs],
        [(m.model_id, m.step) for m in run.outputs.model_outputs],
    )


def _assert_same_io(uri, mlflow, run_ids):
    oracle = mlflow.MlflowClient(tracking_uri=uri)
    client = fastflow.MlflowClient(uri)
    for run_id in run_ids:
        expected = oracle.get_run(run_id)
        got = client.get_run(run_id)
        assert _plain(got) == _plain(expected), run_id
        assert isinstance(got.inputs, RunInputs)
        assert isinstance(got.outputs, RunOutputs)
        assert all(isinstance(d, DatasetInput) for d in got.inputs.dataset_inputs)
        assert all(isinstance(d.dataset, Dataset) for d in got.inputs.dataset_inputs)
        assert all(isinstance(t, InputTag) for d in got.inputs.dataset_inputs for t in d.tags)
        assert all(isinstance(m, LoggedModelInput) for m in got.inputs.model_inputs)
        assert all(isinstance(m, LoggedModelOutput) for m in got.outputs.model_outputs)
        assert (
            got.inputs.to_dictionary()["dataset_inputs"]
            == expected.inputs.to_dictionary()["dataset_inputs"]
        )
        assert got.outputs.to_dictionary() == expected.outputs.to_dictionary()
        assert got.data.params == expected.data.params
    return client


def test_get_run_returns_inputs_and_outputs_from_sqlite(tmp_path, mlflow, mlflow_at):
    uri = f"sqlite:///{tmp_path / 'io.db'}"
    mlflow_at(uri)
    trainer, consumer, plain = _log_with_mlflow(mlflow, uri)

    client = _assert_same_io(uri, mlflow, [trainer, consumer, plain])
    got = client.get_run(trainer)
    names = [d.dataset.name for d in got.inputs.dataset_inputs]
    assert sorted(names) == ["bare", "eval", "tagged", "train"]
    train = got.inputs.dataset_inputs[names.index("train")]
    assert {t.key: t.value for t in train.tags} == {
        "mlflow.data.context": "train",
        "split": "80%",
        "owner": "é",
    }
    assert train.dataset.source_type == "code"
    assert '"name": "a"' in train.dataset.schema
    assert got.inputs.dataset_inputs[names.index("bare")].dataset.schema is None
    assert got.inputs.dataset_inputs[names.index("bare")].tags == []
    assert sorted(m.step for m in got.outputs.model_outputs) == [0, 7]
    consumed = client.get_run(consumer)
    assert len(consumed.inputs.model_inputs) == 2
    assert [m.step for m in consumed.outputs.model_outputs] == [3]
    empty = client.get_run(plain)
    assert empty.inputs == RunInputs() and empty.outputs == RunOutputs()
    # The fluent API reads through the same client.
    fastflow.set_tracking_uri(uri)
    assert _plain(fastflow.get_run(trainer)) == _plain(got)


def test_get_run_returns_inputs_and_outputs_through_a_server(tmp_path, mlflow, mlflow_at):
    server = MlflowServer(tmp_path).start()
    try:
        mlflow_at(server.uri)
        run_ids = _log_with_mlflow(mlflow, server.uri)
        _assert_same_io(server.uri, mlflow, run_ids)
        # The server's store holds the same rows fastflow reads from SQLite directly.
        database = f"sqlite:///{tmp_path / 'server.db'}"
        direct = fastflow.MlflowClient(database)
        remote = fastflow.MlflowClient(server.uri)
        for run_id in run_ids:
            assert _plain(direct.get_run(run_id)) == _plain(remote.get_run(run_id))
    finally:
        server.stop()
