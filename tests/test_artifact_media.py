"""Streams, figures, images and tables: real MLflow reads what fastflow logged and fastflow
reads what MLflow logged, file names and tags are MLflow's, and bad input raises what
MLflow raises."""

import io
import json
import os
import re
import subprocess
import sys
import time
import warnings

import fastflow
import matplotlib
import numpy as np
import pandas as pd
import pytest
from PIL import Image as PILImage

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import plotly.graph_objects as go  # noqa: E402

_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _rgb(height=24, width=40, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def _bytes(path):
    with open(path, "rb") as f:
        return f.read()


@pytest.fixture
def oracle(db_uri, mlflow):
    """MLflow's client on fastflow's store (also the URI of MLflow's fluent API)."""
    # fastflow creates the store's schema, not MLflow.
    fastflow.MlflowClient().get_experiment("0")
    mlflow.set_tracking_uri(db_uri)
    return mlflow.MlflowClient(tracking_uri=db_uri)


@pytest.fixture
def runs(oracle):
    """A run for fastflow and one for MLflow, in the same store."""
    return fastflow.MlflowClient().create_run("0").info.run_id, oracle.create_run("0").info.run_id


def _download(oracle, run_id, path, tmp_path):
    return oracle.download_artifacts(run_id, path, str(tmp_path / "downloads" / run_id))


def _same_error(ours, theirs):
    """Both calls raise the same exception type (by name) and message; returns ours."""
    with pytest.raises(Exception) as mine:
        ours()
    with pytest.raises(Exception) as oracle:
        theirs()
    assert type(mine.value).__name__ == type(oracle.value).__name__
    assert str(mine.value) == str(oracle.value)
    assert getattr(mine.value, "error_code", None) == getattr(oracle.value, "error_code", None)
    return mine.value


def _assert_metric_kept(oracle, run_id, count):
    fastflow.flush()
    assert len(oracle.get_metric_history(run_id, "kept")) == count


# ---- images --------------------------------------------------------------------------------


def _log_series(client, run_id):
    client.log_image(run_id, _rgb(), key="train/sample img", step=3, timestamp=1_700_000_000_000)
    client.log_image(run_id, PILImage.new("L", (300, 100), 128), key="mask", timestamp=17)
    client.log_image(run_id, _rgb(40, 24, seed=1), key="train/sample img", step=4, timestamp=18)


def _series_image(oracle, run_id, marker, compressed, tmp_path):
    suffix = "+compressed.webp" if compressed else ".png"
    (path,) = [
        f.path
        for f in oracle.list_artifacts(run_id, "images")
        if marker in f.path and f.path.endswith(suffix)
    ]
    return PILImage.open(_download(oracle, run_id, path, tmp_path))


def test_image_series_files_and_tag_match_mlflow(oracle, runs, tmp_path):
    ours, theirs = runs
    _log_series(fastflow.MlflowClient(), ours)
    _log_series(oracle, theirs)

    def names(run_id):
        return sorted(
            (_UUID.sub("<uuid>", f.path), f.is_dir) for f in oracle.list_artifacts(run_id, "images")
        )

    assert names(ours) == names(theirs)
    assert len(names(ours)) == 6
    assert ("images/train~sample img+step+3+timestamp+1700000000000+<uuid>.png", False) in (
        names(ours)
    )
    assert ("images/mask+step+0+timestamp+17+<uuid>+compressed.webp", False) in names(ours)
    paths = {f.path for f in oracle.list_artifacts(ours, "images")}
    previews = {p for p in paths if p.endswith(".webp")}
    assert {p[: -len(".png")] + "+compressed.webp" for p in paths - previews} == previews
    tag = oracle.get_run(ours).data.tags["mlflow.loggedImages"]
    assert tag == oracle.get_run(theirs).data.tags["mlflow.loggedImages"] == "True"

    full = _series_image(oracle, ours, "+step+3+timestamp+1700000000000+", False, tmp_path)
    assert full.format == "PNG"
    assert np.array_equal(np.asarray(full), _rgb())
    for marker in ("+step+4+timestamp+18+", "+timestamp+17+"):
        for compressed in (False, True):
            mine = _series_image(oracle, ours, marker, compressed, tmp_path)
            expected = _series_image(oracle, theirs, marker, compressed, tmp_path)
            assert (mine.format, mine.size, mine.mode) == (
                expected.format,
                expected.size,
                expected.mode,
            )
            assert np.array_equal(np.asarray(mine), np.asarray(expected))
    preview = _series_image(oracle, ours, "+timestamp+17+", True, tmp_path)
    assert (preview.format, preview.size) == ("WEBP", (256, 85))


def test_fluent_image_series_defaults(oracle, tmp_path):
    with fastflow.start_run() as run:
        before = int(time.time() * 1000)
        assert fastflow.log_image(_rgb(), key="a", synchronous=True) is None
        fastflow.log_image(fastflow.Image(_rgb()), key="a", step=2)
    paths = [f.path for f in oracle.list_artifacts(run.info.run_id, "images")]
    stamps = {int(re.search(r"\+timestamp\+(\d+)\+", p).group(1)) for p in paths}
    assert all(before <= stamp <= int(time.time() * 1000) for stamp in stamps)
    assert sorted(re.sub(r"timestamp\+\d+", "timestamp+T", _UUID.sub("U", p)) for p in paths) == [
        "images/a+step+0+timestamp+T+U+compressed.webp",
        "images/a+step+0+timestamp+T+U.png",
        "images/a+step+2+timestamp+T+U+compressed.webp",
        "images/a+step+2+timestamp+T+U.png",
    ]


_ARRAYS = {
    "bool_hw": np.eye(8, 12, dtype=bool),
    "uint8_hw1": _rgb()[:, :, :1],
    "int64_hwc": _rgb().astype(np.int64),
    "uint16_rgba": np.full((5, 7, 4), 200, dtype=np.uint16),
    "float_hw": np.linspace(0, 1, 48).reshape(6, 8),
    "float32_rgb": (_rgb() / 255).astype(np.float32),
}


def test_arrays_become_the_images_mlflow_makes(oracle, tmp_path):
    from mlflow.tracking.multimedia import convert_to_pil_image

    with fastflow.start_run() as run:
        for name, array in _ARRAYS.items():
            fastflow.log_image(array, f"arrays/{name}.png")
        fastflow.log_image(PILImage.fromarray(_rgb()), "pil.jpg")
    for name, array in _ARRAYS.items():
        got = PILImage.open(_download(oracle, run.info.run_id, f"arrays/{name}.png", tmp_path))
        expected = convert_to_pil_image(array)
        assert got.mode == expected.mode, name
        assert np.array_equal(np.asarray(got), np.asarray(expected)), name
    jpeg = PILImage.open(_download(oracle, run.info.run_id, "pil.jpg", tmp_path))
    assert (jpeg.format, jpeg.size) == ("JPEG", (40, 24))


def test_out_of_range_floats_are_rescaled_with_a_warning(oracle, tmp_path):
    from mlflow.tracking.multimedia import convert_to_pil_image

    array = np.linspace(-2.0, 3.0, 60).reshape(6, 10)
    with fastflow.start_run() as run:
        with pytest.warns(UserWarning, match="Rescaling values to") as caught:
            fastflow.log_image(array, "scaled.png")
    with warnings.catch_warnings(record=True) as theirs:
        warnings.simplefilter("always")
        expected = convert_to_pil_image(array)
    assert str(caught[0].message) == str(theirs[0].message)
    got = PILImage.open(_download(oracle, run.info.run_id, "scaled.png", tmp_path))
    assert np.array_equal(np.asarray(got), np.asarray(expected))


def test_image_class_behaves_like_mlflows(mlflow, tmp_path):
    path = str(tmp_path / "in.png")
    PILImage.fromarray(_rgb()).save(path)
    for source in (_rgb(), _rgb().tolist(), PILImage.fromarray(_rgb()), path):
        ours, theirs = fastflow.Image(source), mlflow.Image(source)
        assert ours.size == theirs.size == (40, 24)
        assert ours.to_list() == theirs.to_list()
        assert np.array_equal(ours.to_array(), theirs.to_array())
        assert isinstance(ours.to_pil(), PILImage.Image)
    smaller = fastflow.Image(_rgb()).resize((10, 6))
    assert isinstance(smaller, fastflow.Image) and smaller.size == (10, 6)
    fastflow.Image(_rgb()).save(str(tmp_path / "out.png"))
    assert np.array_equal(np.asarray(PILImage.open(tmp_path / "out.png")), _rgb())
    _same_error(lambda: fastflow.Image(3), lambda: mlflow.Image(3))


_BAD_IMAGES = {
    "int_out_of_range": np.full((4, 4), 300),
    "negative_int": np.full((4, 4), -1, dtype=np.int8),
    "complex": np.zeros((4, 4), dtype=complex),
    "strings": np.array([["a"]]),
    "one_dimension": np.zeros(4),
    "four_dimensions": np.zeros((2, 2, 2, 3)),
    "two_channels": np.zeros((4, 4, 2)),
    "a_list": [[0, 1], [1, 0]],
    "a_path": "image.png",
}


@pytest.mark.parametrize("name", list(_BAD_IMAGES))
def test_bad_images_raise_what_mlflow_raises(oracle, runs, name):
    ours, theirs = runs
    client = fastflow.MlflowClient()
    client.log_metric(ours, "kept", 1.0)
    image = _BAD_IMAGES[name]
    for kwargs in ({"artifact_file": "bad.png"}, {"key": "bad"}):
        _same_error(
            lambda kw=kwargs: client.log_image(ours, image, **kw),
            lambda kw=kwargs: oracle.log_image(theirs, image, **kw),
        )
    assert oracle.list_artifacts(ours) == []
    _assert_metric_kept(oracle, ours, 1)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"artifact_file": "a.png", "key": "k"},
        {"artifact_file": "a.png", "step": 1},
        {"artifact_file": "a.png", "timestamp": 1},
        {},
        {"step": 1},
        {"key": "a!b"},
        {"key": "a:b", "step": 1},
        {"key": ""},
        {"key": "é"},
    ],
)
def test_bad_image_arguments_raise_what_mlflow_raises(oracle, runs, kwargs):
    ours, theirs = runs
    client = fastflow.MlflowClient()
    client.log_metric(ours, "kept", 1.0)
    _same_error(
        lambda: client.log_image(ours, _rgb(), **kwargs),
        lambda: oracle.log_image(theirs, _rgb(), **kwargs),
    )
    assert oracle.list_artifacts(ours) == []
    assert "mlflow.loggedImages" not in oracle.get_run(ours).data.tags
    _assert_metric_kept(oracle, ours, 1)


# ---- tables --------------------------------------------------------------------------------

_FIRST = {
    "inputs": ["What is MLflow?", "What is fastflow?"],
    "score": [0.5, 1.0],
    "count": [1, 2],
    "when": pd.to_datetime(["2024-01-02", "2024-03-04"]),
}
_SECOND = {
    "inputs": ["And now?"],
    "score": [0.25],
    "count": [3],
    "when": pd.to_datetime(["2024-05-06"]),
}


def _log_tables(client, run_id):
    client.log_table(run_id, _FIRST, "eval/results.json")
    client.log_table(run_id, pd.DataFrame(_SECOND), "eval/results.json")
    client.log_table(run_id, {"question": "What is it?", "n": 1}, "one_row.json")
    client.log_table(run_id, pd.DataFrame(_FIRST), "results.parquet")
    client.log_table(run_id, pd.DataFrame(_SECOND), "results.parquet")


def test_mlflow_loads_tables_fastflow_logged(mlflow, oracle, runs, tmp_path):
    ours, theirs = runs
    _log_tables(fastflow.MlflowClient(), ours)
    _log_tables(oracle, theirs)
    for name in ("eval/results.json", "one_row.json"):
        mine = _bytes(_download(oracle, ours, name, tmp_path))
        assert mine == _bytes(_download(oracle, theirs, name, tmp_path)), name
    for name in ("eval/results.json", "one_row.json", "results.parquet"):
        mine = mlflow.load_table(name, run_ids=[ours], extra_columns=["run_id"])
        expected = mlflow.load_table(name, run_ids=[theirs], extra_columns=["run_id"])
        pd.testing.assert_frame_equal(mine.drop(columns="run_id"), expected.drop(columns="run_id"))
        assert set(mine["run_id"]) == {ours}
    assert len(mlflow.load_table("eval/results.json", run_ids=[ours])) == 3
    tag = oracle.get_run(ours).data.tags["mlflow.loggedArtifacts"]
    assert tag == oracle.get_run(theirs).data.tags["mlflow.loggedArtifacts"]
    assert json.loads(tag) == [
        {"path": "eval/results.json", "type": "table"},
        {"path": "one_row.json", "type": "table"},
        {"path": "results.parquet", "type": "table"},
    ]
    # Rows of every run that logged the table, newest run first, as MLflow orders them.
    pd.testing.assert_frame_equal(
        fastflow.load_table("eval/results.json", extra_columns=["run_id"]),
        mlflow.load_table("eval/results.json", extra_columns=["run_id"]),
    )


def test_fastflow_loads_tables_mlflow_logged(tmp_path, mlflow):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    theirs = mlflow.MlflowClient(tracking_uri=uri)
    # MLflow's active experiment would outlive this test: name it explicitly instead.
    experiment_id = theirs.create_experiment("tables")
    with mlflow.start_run(experiment_id=experiment_id) as first:
        mlflow.log_table(_FIRST, "t.json")
        mlflow.log_table(_SECOND, "t.json")
    with mlflow.start_run(experiment_id=experiment_id) as second:
        mlflow.log_table(pd.DataFrame(_SECOND), "t.json")
    fastflow.set_tracking_uri(uri)
    fastflow.set_experiment("tables")
    loaded = fastflow.load_table("t.json", extra_columns=["run_id"])
    expected = theirs.load_table(experiment_id, "t.json", extra_columns=["run_id"])
    pd.testing.assert_frame_equal(loaded, expected)
    assert list(loaded["run_id"]) == [second.info.run_id] + [first.info.run_id] * 3
    only_first = fastflow.load_table("t.json", run_ids=[first.info.run_id])
    assert list(only_first["inputs"]) == _FIRST["inputs"] + _SECOND["inputs"]
    # Appending to MLflow's table keeps its rows.
    fastflow.log_table({"inputs": ["more"], "score": [0.0]}, "t.json", run_id=second.info.run_id)
    appended = mlflow.load_table("t.json", run_ids=[second.info.run_id])
    assert list(appended["inputs"]) == ["And now?", "more"]


def test_image_columns_are_stored_as_mlflow_stores_them(mlflow, oracle, runs, tmp_path):
    ours, theirs = runs
    for client, run_id, image_type in (
        (fastflow.MlflowClient(), ours, fastflow.Image),
        (oracle, theirs, mlflow.Image),
    ):
        table = pd.DataFrame(
            {"prompt": ["a dog", "a cat"], "picture": [image_type(_rgb()), image_type(_rgb(8, 8))]}
        )
        client.log_table(run_id, table, "gen/images.json")
    # MLflow replaces the images in the caller's DataFrame by references; so does fastflow.
    assert isinstance(table["picture"][0], dict)
    replaced = pd.DataFrame({"picture": [fastflow.Image(_rgb())]})
    fastflow.MlflowClient().log_table(ours, replaced, "replaced.json")
    assert sorted(replaced["picture"][0]) == ["compressed_filepath", "filepath", "type"]
    mine = mlflow.load_table("gen/images.json", run_ids=[ours])
    expected = mlflow.load_table("gen/images.json", run_ids=[theirs])
    assert list(mine.columns) == list(expected.columns) == ["prompt", "picture"]
    for cell, reference in zip(mine["picture"], expected["picture"]):
        assert sorted(cell) == sorted(reference)
        assert _UUID.sub("U", cell["filepath"]) == _UUID.sub("U", reference["filepath"])
        assert _UUID.sub("U", cell["filepath"]) == "table_images/gen/images/U.png"
        assert cell["compressed_filepath"] == cell["filepath"][: -len(".png")] + ".webp"
    first = PILImage.open(_download(oracle, ours, mine["picture"][0]["filepath"], tmp_path))
    assert np.array_equal(np.asarray(first), _rgb())
    preview = PILImage.open(
        _download(oracle, ours, mine["picture"][1]["compressed_filepath"], tmp_path)
    )
    assert (preview.format, preview.size) == ("WEBP", (256, 256))
    assert len(oracle.list_artifacts(ours, "table_images/gen/images")) == 4
    assert len(oracle.list_artifacts(ours, "table_images/replaced")) == 2


def test_bad_tables_raise_what_mlflow_raises(mlflow, oracle, runs):
    ours, theirs = runs
    client = fastflow.MlflowClient()
    client.log_metric(ours, "kept", 1.0)
    for name in ("a,b.json", "a:b.json", "it's.json", "[x].json", '"q".json', "{x}.json"):
        error = _same_error(
            lambda n=name: client.log_table(ours, _FIRST, n),
            lambda n=name: oracle.log_table(theirs, _FIRST, n),
        )
        assert isinstance(error, ValueError)
    for name in ("table.csv", "table", "table.JSON"):
        _same_error(
            lambda n=name: client.log_table(ours, _FIRST, n),
            lambda n=name: oracle.log_table(theirs, _FIRST, n),
        )
    error = _same_error(
        lambda: client.log_table(ours, [1, 2], "t.json"),
        lambda: oracle.log_table(theirs, [1, 2], "t.json"),
    )
    assert error.error_code == "INVALID_PARAMETER_VALUE"
    mixed = pd.DataFrame({"x": [fastflow.Image(_rgb()), "text"]})
    _same_error(
        lambda: client.log_table(ours, mixed, "mixed.json"),
        lambda: oracle.log_table(theirs, mixed.assign(x=[mlflow.Image(_rgb()), "t"]), "m.json"),
    )
    assert oracle.list_artifacts(ours) == []
    assert "mlflow.loggedArtifacts" not in oracle.get_run(ours).data.tags
    error = _same_error(
        lambda: client.load_table("0", "missing.json"),
        lambda: oracle.load_table("0", "missing.json"),
    )
    assert error.error_code == "RESOURCE_DOES_NOT_EXIST"
    _same_error(
        lambda: client.load_table("0", "a,b.json"),
        lambda: oracle.load_table("0", "a,b.json"),
    )
    _assert_metric_kept(oracle, ours, 1)


def test_a_table_file_removed_from_a_run_is_reported(oracle, runs):
    ours, _ = runs
    client = fastflow.MlflowClient()
    client.log_table(ours, _FIRST, "t.json")
    artifact_dir = oracle.get_run(ours).info.artifact_uri.replace("file://", "")
    os.remove(os.path.join(artifact_dir, "t.json"))
    with pytest.raises(fastflow.MlflowException) as missing:
        client.load_table("0", "t.json")
    assert missing.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    assert missing.value.message == f"Artifact t.json not found for run {ours}."


# ---- figures and streams -------------------------------------------------------------------


def test_matplotlib_figure_to_png(oracle, tmp_path):
    figure, axes = plt.subplots(figsize=(4, 3))
    axes.plot([0, 1, 2], [2, 1, 3])
    save_kwargs = {"dpi": 50}
    with fastflow.start_run() as run:
        fastflow.log_figure(figure, "plots/line.png", save_kwargs=save_kwargs)
        fastflow.log_figure(figure, "plots/line.svg")
    plt.close(figure)
    assert save_kwargs == {"dpi": 50}
    png = PILImage.open(_download(oracle, run.info.run_id, "plots/line.png", tmp_path))
    assert (png.format, png.size) == ("PNG", (200, 150))
    svg = _bytes(_download(oracle, run.info.run_id, "plots/line.svg", tmp_path))
    assert b"<svg" in svg


def test_plotly_figure_to_html(mlflow, oracle, runs, tmp_path):
    ours, theirs = runs
    figure = go.Figure(go.Scatter(x=[0, 1], y=[2, 3]))
    fastflow.MlflowClient().log_figure(ours, figure, "figure.html")
    oracle.log_figure(theirs, figure, "figure.html")
    mine = _bytes(_download(oracle, ours, "figure.html", tmp_path)).decode()
    expected = _bytes(_download(oracle, theirs, "figure.html", tmp_path)).decode()
    # plotly names each figure's <div> at random.
    div_id = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
    assert div_id.sub("ID", mine) == div_id.sub("ID", expected)
    assert "cdn.plot.ly" in mine and len(mine) < 100_000
    with fastflow.start_run() as run:
        fastflow.log_figure(figure, "full.html", save_kwargs={"include_plotlyjs": True})
    full = _bytes(_download(oracle, run.info.run_id, "full.html", tmp_path))
    assert len(full) > 1_000_000


def test_unsupported_figures_raise_what_mlflow_raises(oracle, runs):
    ours, theirs = runs
    client = fastflow.MlflowClient()
    for figure, name in (
        ("not a figure", "f.png"),
        (PILImage.new("RGB", (2, 2)), "f.png"),
        (go.Figure(), "f.gif"),
        (go.Figure(), "f.PNG"),
    ):
        error = _same_error(
            lambda f=figure, n=name: client.log_figure(ours, f, n),
            lambda f=figure, n=name: oracle.log_figure(theirs, f, n),
        )
        assert isinstance(error, TypeError)
    assert oracle.list_artifacts(ours) == []


def test_log_stream_is_byte_identical(oracle, tmp_path):
    payload = os.urandom(300_000)
    with fastflow.start_run() as run:
        fastflow.log_stream(io.BytesIO(payload), "blobs/data.bin")
        fastflow.log_stream(io.BytesIO(b""), "empty.bin")
    other = fastflow.MlflowClient().create_run("0").info.run_id
    with open(tmp_path / "source.bin", "wb") as f:
        f.write(payload)
    with open(tmp_path / "source.bin", "rb") as f:
        fastflow.log_stream(f, "copy.bin", run_id=other)
    assert _bytes(_download(oracle, run.info.run_id, "blobs/data.bin", tmp_path)) == payload
    assert _bytes(_download(oracle, run.info.run_id, "empty.bin", tmp_path)) == b""
    assert _bytes(_download(oracle, other, "copy.bin", tmp_path)) == payload
    assert oracle.list_artifacts(run.info.run_id, "blobs")[0].file_size == len(payload)


def test_importing_fastflow_loads_no_media_library():
    code = (
        "import sys, fastflow\n"
        "print([m for m in ('numpy', 'PIL', 'pandas', 'matplotlib', 'plotly') "
        "if m in sys.modules])"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
