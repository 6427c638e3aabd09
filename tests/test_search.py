"""search_runs and search_experiments against real MLflow 3.17.2 on one database: same runs,
same order, equal DataFrames (columns, values, dtypes), and the same filters refused."""

import contextlib
import json
import math
import sqlite3
import subprocess
import sys
import warnings

import fastflow
import pandas as pd
import pytest
from conftest import run_python
from fastflow.entities import ViewType

_RUNS = 300


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A few hundred runs in several experiments: nested runs, NaN and infinite metrics,
    missing keys, odd key names, every status, deleted runs and a deleted experiment."""
    uri = f"sqlite:///{tmp_path_factory.mktemp('search') / 'search.db'}"
    client = fastflow.MlflowClient(uri)
    experiments = [
        client.create_experiment(name, tags={"owner": owner})
        for name, owner in (("vision", "ana"), ("Speech", "bo"), ("tabular", "ana"))
    ]
    gone = client.create_experiment("retired")
    ids = {}
    parent = None
    for i in range(_RUNS):
        experiment = experiments[i % 3]
        tags = {"mlflow.runName": f"run-{i}"}
        if i % 4:
            tags["team"] = ["A", "B", "a"][i % 3]
        if i % 10 == 0:
            parent = None
        if parent is not None and i % 10 in (1, 2):
            tags["mlflow.parentRunId"] = parent
        run = client.create_run(experiment, start_time=1_700_000_000_000 + (i % 50) * 7, tags=tags)
        run_id = run.info.run_id
        ids[i] = run_id
        if i % 10 == 0:
            parent = run_id
        client.log_param(run_id, "lr", ["0.01", "0.1", "0.001"][i % 3])
        if i % 5 == 0:
            client.log_param(run_id, "model", "cnn" if i % 2 else "mlp")
        client.log_param(run_id, "weird key.with.dots", "v" if i % 2 else "w")
        if i % 7:
            acc = float("nan") if i % 11 == 0 else (i % 17) / 16
            client.log_metric(run_id, "acc", acc, step=0)
        client.log_metric(run_id, "loss", -1.5 + i / 10, step=1)
        if i % 6 == 0:
            client.log_metric(run_id, "odd key-name", float("inf") if i % 12 == 0 else i)
        status = "FINISHED"
        if i % 13 == 0:
            status = "FAILED"
        elif i % 9 == 0:
            status = "KILLED"
        if i % 8 != 3:
            client.set_terminated(run_id, status, end_time=1_700_000_100_000 + i)
        if i % 19 == 0:
            client.delete_run(run_id)
    retired = client.create_run(gone, tags={"mlflow.runName": "old"})
    client.delete_experiment(gone)
    client.flush()
    return {"uri": uri, "ids": ids, "experiments": experiments, "retired": retired.info.run_id}


FILTERS = [
    "",
    "metrics.acc > 0.5",
    "metrics.acc >= 0.5",
    "metrics.acc < 0.3",
    "metrics.acc <= 0.3",
    "metrics.acc = 0.5",
    "metrics.acc != 0.5",
    "metrics.loss > -1",
    "metrics.loss < 1e1",
    "metrics.loss >= -1.5",
    "metrics.`odd key-name` > 10",
    'metrics."odd key-name" >= 0',
    "metric.acc > .25",
    "params.lr = '0.01'",
    "params.lr != '0.01'",
    "params.lr LIKE '0.0%'",
    "params.lr ILIKE '%1'",
    'params.model = "cnn"',
    "params.model IS NULL",
    "params.model IS NOT NULL",
    "param.`weird key.with.dots` = 'v'",
    "tags.team = 'A'",
    "tags.team LIKE 'a%'",
    "tags.team ILIKE 'a%'",
    "tags.team != 'A'",
    "tags.team IS NULL",
    "tags.`mlflow.runName` LIKE 'run-1%'",
    "tags.mlflow.runName = 'run-10'",
    "tags.`mlflow.parentRunId` IS NULL",
    "tags.`mlflow.parentRunId` IS NOT NULL",
    "attributes.status = 'FINISHED'",
    "attributes.status != 'FINISHED'",
    "status = 'FAILED'",
    "run.status LIKE 'K%'",
    "attributes.status ILIKE 'running'",
    "run_id IN ('{id1}', '{id2}', '{id3}')",
    "attributes.run_id NOT IN ('{id1}', '{id2}')",
    "attributes.run_id = '{id4}'",
    "attributes.run_name = 'run-30'",
    "attributes.run_name LIKE 'run-1%'",
    "attr.run_name ILIKE 'RUN-2_'",
    "`Run name` = 'run-31'",
    "attributes.start_time > 1700000000200",
    "attributes.start_time <= 1700000000070",
    "attributes.end_time > 1700000100150",
    "attributes.end_time != 1700000100150",
    "created >= 1700000000300",
    "attributes.artifact_uri LIKE '%mlruns%'",
    "attributes.user_id != 'nobody'",
    "metrics.acc > 0.2 AND params.lr = '0.01'",
    "metrics.acc > 0.2 and tags.team = 'B' AND attributes.status = 'FINISHED'",
    "params.lr = '0.1' AND params.model IS NULL AND metrics.loss < 10",
    "tags.mlflow.parentRunId = '{parent}'",
    "metrics.acc > 2",
    "datasets.name = 'nothing'",
]

ORDERS = [
    None,
    ["metrics.acc DESC"],
    ["metrics.acc"],
    ["metrics.acc ASC", "params.lr DESC"],
    ["params.lr", "metrics.loss DESC"],
    ["tags.team DESC"],
    ["attributes.start_time ASC"],
    ["attributes.run_name"],
    ["attribute.end_time DESC"],
    ["created"],
    ["metrics.`odd key-name` DESC"],
    ["status", "metrics.loss"],
    ["run_id"],
    ["params.model DESC", "tags.team"],
]

VIEWS = [ViewType.ACTIVE_ONLY, ViewType.DELETED_ONLY, ViewType.ALL]


def _cases():
    cases = [(f, None, ViewType.ACTIVE_ONLY) for f in FILTERS]
    cases += [("", o, ViewType.ACTIVE_ONLY) for o in ORDERS[1:]]
    cases += [("metrics.acc >= 0", o, ViewType.ALL) for o in ORDERS[1:6]]
    cases += [("params.lr != '0.1'", ["metrics.loss DESC"], v) for v in VIEWS]
    cases += [("tags.team = 'a'", None, ViewType.DELETED_ONLY)]
    return cases


CASES = _cases()


def _fill(text, store):
    ids = store["ids"]
    return text.format(id1=ids[1], id2=ids[2], id3=ids[19], id4=ids[5], parent=ids[20])


def _frames(mlflow, store, filter_string, order_by, view):
    uri = store["uri"]
    fastflow.set_tracking_uri(uri)
    mlflow.set_tracking_uri(uri)
    kwargs = dict(
        filter_string=filter_string,
        order_by=order_by,
        run_view_type=view,
        search_all_experiments=True,
    )
    ours = fastflow.search_runs(**kwargs)
    theirs = mlflow.search_runs(**kwargs)
    return ours, theirs


def test_there_are_at_least_sixty_cases():
    assert len(CASES) >= 60


@pytest.mark.parametrize(("filter_string", "order_by", "view"), CASES)
def test_search_runs_matches_mlflow(store, mlflow, filter_string, order_by, view):
    filter_string = _fill(filter_string, store)
    ours, theirs = _frames(mlflow, store, filter_string, order_by, view)
    assert list(ours["run_id"]) == list(theirs["run_id"])
    # Same process, same string hashes: MLflow's set-ordered columns come out the same.
    assert list(ours.columns) == list(theirs.columns)
    columns = sorted(theirs.columns)
    pd.testing.assert_frame_equal(ours[columns], theirs[columns])


@pytest.mark.parametrize(
    ("filter_string", "order_by"),
    [
        ("metrics.acc > 0.5 OR params.lr = '1'", None),
        ("params.lr > '1'", None),
        ("metrics.acc = 'x'", None),
        ("params.lr = 1", None),
        ("foo.bar = 1", None),
        ("attributes.nope = 'x'", None),
        ("attributes.status IN ('a')", None),
        ("metrics.acc IS NULL", None),
        ("(metrics.acc > 1)", None),
        ("metrics.acc >", None),
        ("params.p = 'open", None),
        ("metrics.a > 1; metrics.b > 2", None),
        ("metrics.acc == 1", None),
        ("attributes.start_time > 'x'", None),
        ("run_id IN ()", None),
        ("", ["metrics.acc UP"]),
        ("", ["foo.bar"]),
        ("", ["metrics.acc", "metrics.acc DESC"]),
        ("", ["attributes.nope"]),
    ],
)
def test_search_runs_refuses_what_mlflow_refuses(store, mlflow, filter_string, order_by):
    fastflow.set_tracking_uri(store["uri"])
    mlflow.set_tracking_uri(store["uri"])
    with pytest.raises(mlflow.exceptions.MlflowException):
        mlflow.search_runs(filter_string=filter_string, order_by=order_by)
    with pytest.raises(fastflow.MlflowException) as caught:
        fastflow.search_runs(filter_string=filter_string, order_by=order_by)
    assert caught.value.error_code == "INVALID_PARAMETER_VALUE"
    assert caught.value.message


@pytest.fixture(scope="module")
def null_tags(tmp_path_factory):
    """Runs whose tag values are NULL in places (MLflow's log_batch stores None so): one tag
    NULL in some runs, one NULL in every run that has it."""
    path = tmp_path_factory.mktemp("null-tags") / "store.db"
    client = fastflow.MlflowClient(f"sqlite:///{path}")
    experiment = client.create_experiment("nulls")
    ids = []
    for i in range(6):
        run = client.create_run(
            experiment, tags={"some": f"s{i}"} | ({"none": "x"} if i % 2 else {})
        )
        client.log_param(run.info.run_id, "p", str(i))
        client.log_metric(run.info.run_id, "m", i / 2)
        ids.append(run.info.run_id)
    client.flush()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE tags SET value = NULL WHERE key = 'none'")
        conn.execute("UPDATE tags SET value = NULL WHERE key = 'some' AND run_uuid = ?", (ids[2],))
    return f"sqlite:///{path}"


@pytest.mark.parametrize(
    "option",
    [None, ("future.infer_string", False), ("mode.string_storage", "python")],
    ids=["arrow-strings", "object-strings", "python-strings"],
)
@pytest.mark.parametrize("filter_string", ["", "params.p = '3'"])
def test_frame_dtypes_as_mlflows_for_every_string_storage(null_tags, mlflow, option, filter_string):
    """Text columns come over as Arrow buffers only when pandas would make them pyarrow-backed
    str columns; a column of NULL tags alone stays an object column of None, as in MLflow's."""
    fastflow.set_tracking_uri(null_tags)
    mlflow.set_tracking_uri(null_tags)
    with warnings.catch_warnings():
        # pandas 3 deprecates turning off its str dtype.
        warnings.simplefilter("ignore")
        with pd.option_context(*option) if option else contextlib.nullcontext():
            ours = fastflow.search_runs(search_all_experiments=True, filter_string=filter_string)
            theirs = mlflow.search_runs(search_all_experiments=True, filter_string=filter_string)
    assert list(ours.columns) == list(theirs.columns)
    assert "tags.none" in ours.columns
    pd.testing.assert_frame_equal(ours, theirs)


def test_client_search_pages_like_mlflow(store, mlflow):
    fastflow.set_tracking_uri(store["uri"])
    mlflow.set_tracking_uri(store["uri"])
    ours = fastflow.MlflowClient(store["uri"])
    theirs = mlflow.MlflowClient(tracking_uri=store["uri"])
    experiments = store["experiments"]
    collected, token = [], None
    while True:
        page = ours.search_runs(experiments, "metrics.loss > 0", max_results=37, page_token=token)
        reference = theirs.search_runs(
            experiments, "metrics.loss > 0", max_results=37, page_token=token
        )
        assert [r.info.run_id for r in page] == [r.info.run_id for r in reference]
        assert page.token == reference.token
        for mine, real in zip(page, reference):
            assert mine.data.params == real.data.params
            assert mine.data.tags == real.data.tags
            assert mine.data.metrics.keys() == real.data.metrics.keys()
            for key, value in real.data.metrics.items():
                assert mine.data.metrics[key] == value or (
                    math.isnan(value) and math.isnan(mine.data.metrics[key])
                )
        collected += page
        token = page.token
        if not token:
            break
    assert len(collected) == len(
        theirs.search_runs(experiments, "metrics.loss > 0", max_results=1000)
    )
    listed = fastflow.search_runs(experiment_ids=experiments, output_format="list", max_results=5)
    assert [r.info.run_id for r in listed] == [
        r.info.run_id
        for r in mlflow.search_runs(experiment_ids=experiments, output_format="list", max_results=5)
    ]


@pytest.mark.parametrize(
    ("filter_string", "order_by", "view"),
    [
        (None, None, ViewType.ACTIVE_ONLY),
        (None, None, ViewType.ALL),
        (None, None, ViewType.DELETED_ONLY),
        ("name LIKE '%i%'", None, ViewType.ALL),
        ("name ILIKE 's%'", ["name DESC"], ViewType.ACTIVE_ONLY),
        ("attribute.name = 'vision'", None, ViewType.ACTIVE_ONLY),
        ("tags.owner = 'ana'", ["experiment_id DESC"], ViewType.ACTIVE_ONLY),
        ("tags.owner IS NULL", None, ViewType.ALL),
        ("experiment_id IN ('1', '2')", None, ViewType.ACTIVE_ONLY),
        ("creation_time > 0", ["last_update_time ASC"], ViewType.ALL),
    ],
)
def test_search_experiments_matches_mlflow(store, mlflow, filter_string, order_by, view):
    fastflow.set_tracking_uri(store["uri"])
    mlflow.set_tracking_uri(store["uri"])
    kwargs = dict(view_type=view, filter_string=filter_string, order_by=order_by)
    ours = fastflow.search_experiments(**kwargs)
    theirs = mlflow.search_experiments(**kwargs)
    assert [e.experiment_id for e in ours] == [e.experiment_id for e in theirs]
    assert [e.tags for e in ours] == [e.tags for e in theirs]


def test_parent_run_and_metric_history(store, mlflow):
    ours = fastflow.MlflowClient(store["uri"])
    theirs = mlflow.MlflowClient(tracking_uri=store["uri"])
    child = store["ids"][21]
    assert ours.get_parent_run(child).info.run_id == theirs.get_parent_run(child).info.run_id
    fastflow.set_tracking_uri(store["uri"])
    assert fastflow.get_parent_run(child).info.run_id == store["ids"][20]
    assert fastflow.get_parent_run(store["ids"][20]) is None
    history = ours.get_metric_history(store["ids"][22], "loss")
    reference = theirs.get_metric_history(store["ids"][22], "loss")
    assert [(m.key, m.value, m.step, m.timestamp) for m in history] == [
        (m.key, m.value, m.step, m.timestamp) for m in reference
    ]


def test_reads_see_points_still_queued(db_uri):
    with fastflow.start_run() as run:
        fastflow.log_metric("fresh", 3.0)
        found = fastflow.search_runs(filter_string="metrics.fresh = 3", output_format="list")
        assert [r.info.run_id for r in found] == [run.info.run_id]


def test_list_output_needs_no_pandas(store):
    code = (
        "import sys; sys.modules['pandas'] = None\n"
        "import fastflow\n"
        f"fastflow.set_tracking_uri({store['uri']!r})\n"
        "runs = fastflow.search_runs(search_all_experiments=True, output_format='list',\n"
        "                            filter_string=\"params.lr = '0.1'\")\n"
        "print(len(runs))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) > 0


@pytest.mark.parametrize("filter_string", ["   ", "\t", "\n", " \r\n ", "", None])
def test_blank_filters_as_mlflow(store, mlflow, filter_string):
    """An empty filter matches everything; one of whitespace alone MLflow cannot parse."""
    fastflow.set_tracking_uri(store["uri"])
    mlflow.set_tracking_uri(store["uri"])
    theirs_client = mlflow.MlflowClient(tracking_uri=store["uri"])
    ours_client = fastflow.MlflowClient(store["uri"])
    calls = [
        lambda m: m.search_runs(filter_string=filter_string, search_all_experiments=True),
        lambda m: m.search_experiments(filter_string=filter_string),
    ]
    for call in calls:
        assert _outcome(call, fastflow) == _outcome(call, mlflow)
    assert _outcome(
        lambda: ours_client.search_runs(["1"], filter_string=filter_string)
    ) == _outcome(lambda: theirs_client.search_runs(["1"], filter_string=filter_string))
    assert _outcome(
        lambda: ours_client.search_experiments(filter_string=filter_string)
    ) == _outcome(lambda: theirs_client.search_experiments(filter_string=filter_string))


def _outcome(call, *args):
    try:
        found = call(*args)
    except Exception as e:
        return (type(e).__name__, e.error_code, e.message)
    if isinstance(found, pd.DataFrame):
        return list(found["run_id"])
    return [x.info.run_id if hasattr(x, "info") else x.experiment_id for x in found]


_LONG = [
    ("runs", "metrics.acc > 0", 2001),
    ("runs", "params.lr = '0.1'", 2001),
    ("runs", "tags.team = 'A'", 2001),
    ("runs", "attributes.status = 'FINISHED'", 2001),
    ("runs", "metrics.acc > 0", 1001),
    ("experiments", "name != 'x'", 2001),
    ("experiments", "tags.owner = 'ana'", 2001),
]


@pytest.mark.parametrize(("target", "clause", "count"), _LONG)
def test_filters_too_long_for_mlflows_parser(store, mlflow, target, clause, count):
    """MLflow's parser (sqlparse) refuses a statement of more than 10,000 tokens: MLflow
    says it could not parse the filter, before any SQL is run."""
    fastflow.set_tracking_uri(store["uri"])
    mlflow.set_tracking_uri(store["uri"])
    text = " AND ".join([clause] * count)

    def call(m):
        if target == "runs":
            return m.search_runs(filter_string=text, search_all_experiments=True)
        return m.search_experiments(filter_string=text)

    ours, theirs = _outcome(call, fastflow), _outcome(call, mlflow)
    assert ours == theirs
    assert ours[:2] == ("MlflowException", "INVALID_PARAMETER_VALUE")
    assert ours[2] == f"Error on parsing filter '{text}'"


def _padded(clause, clauses, tokens, filler=" "):
    """``clauses`` copies of ``clause`` (5 sqlparse tokens) AND-ed (3 more each), padded
    with ``filler`` characters (one token each) to exactly ``tokens`` tokens."""
    text = " AND ".join([clause] * clauses)
    return text + filler * (tokens - (8 * clauses - 3))


@pytest.mark.parametrize("tokens", [10_000, 10_001])
@pytest.mark.parametrize("filler", [" ", "\r\n", "\t"])
def test_the_parser_limit_is_mlflows_to_the_token(store, mlflow, tokens, filler):
    """At 10,000 tokens MLflow's parser still accepts a filter, at 10,001 it does not; below
    the limit fastflow answers even where MLflow's SQL is too deep for SQLite (MLflow then
    fails with SQLite's "Expression tree is too large")."""
    from mlflow.utils.search_utils import SearchExperimentsUtils, SearchUtils

    fastflow.set_tracking_uri(store["uri"])
    runs_filter = _padded("metrics.acc>0", 1250, tokens, filler)
    experiments_filter = _padded("name != 'x'", 1250, tokens, filler)

    def parses(parser, text):
        try:
            parser.parse_search_filter(text)
        except mlflow.exceptions.MlflowException as e:
            return e.message
        return None

    for parser, text, call in (
        (
            SearchUtils,
            runs_filter,
            lambda: fastflow.search_runs(filter_string=runs_filter, search_all_experiments=True),
        ),
        (
            SearchExperimentsUtils,
            experiments_filter,
            lambda: fastflow.search_experiments(filter_string=experiments_filter),
        ),
    ):
        refused = parses(parser, text)
        assert (refused is None) == (tokens == 10_000)
        if refused is None:
            assert len(call()) > 0
        else:
            with pytest.raises(fastflow.MlflowException) as caught:
                call()
            assert caught.value.message == refused
            assert caught.value.error_code == "INVALID_PARAMETER_VALUE"


def test_a_long_filter_below_the_limit_finds_what_a_short_one_finds(store):
    """One thousand AND-ed clauses: fastflow's SQL stays shallow enough for SQLite."""
    fastflow.set_tracking_uri(store["uri"])
    short = fastflow.search_runs(
        filter_string="metrics.acc > 0.5 AND params.lr = '0.1'", search_all_experiments=True
    )
    long = fastflow.search_runs(
        filter_string=" AND ".join(["metrics.acc > 0.5", "params.lr = '0.1'"] * 500),
        search_all_experiments=True,
    )
    assert list(long["run_id"]) == list(short["run_id"])
    assert len(short) > 0


_COLUMNS = r"""
import json, os, sys, time
if sys.argv[1] == "mlflow":
    import mlflow
else:
    import fastflow as mlflow
mlflow.set_tracking_uri(f"sqlite:///{os.path.abspath(sys.argv[2])}")
for i in range(4):
    with mlflow.start_run(run_name=f"r{i}"):
        mlflow.log_metrics({f"m{i}_{k}": float(k) for k in range(6)} | {"shared": 1.0})
        mlflow.log_params({f"p{i}_{k}": k for k in range(5)} | {"lr": 0.1})
        mlflow.set_tags({f"t{i}_{k}": k for k in range(4)})
    time.sleep(0.01)
print(json.dumps(list(mlflow.search_runs().columns), separators=(",", ":")))
"""


def _columns(module, directory, seed, monkeypatch):
    monkeypatch.setenv("PYTHONHASHSEED", str(seed))
    directory.mkdir()
    (words,) = run_python(_COLUMNS, module, directory / "store.db")
    return json.loads(words)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_frame_columns_in_mlflows_order_for_a_given_hash_seed(tmp_path, monkeypatch, seed):
    """MLflow orders the columns a run brings by a set of its keys, so the order depends on
    the string hashes of the process (PYTHONHASHSEED). With the same seed, fastflow's order
    is MLflow's exactly."""
    theirs = _columns("mlflow", tmp_path / "mlflow", seed, monkeypatch)
    ours = _columns("fastflow", tmp_path / "fastflow", seed, monkeypatch)
    assert ours == theirs


def test_what_is_fixed_in_the_column_order(tmp_path, monkeypatch):
    """Whatever the seed: run attributes, then metrics, params and tags; within each, the
    keys of the newest run (first in the frame) before those that only older runs have."""
    for seed in (5, 6):
        columns = _columns("fastflow", tmp_path / f"seed{seed}", seed, monkeypatch)
        info = ["run_id", "experiment_id", "status", "artifact_uri", "start_time", "end_time"]
        assert columns[:6] == info
        kinds = [c.split(".", 1)[0] for c in columns[6:]]
        assert kinds == sorted(kinds, key=["metrics", "params", "tags"].index)
        for prefix, first in (("metrics.", "m"), ("params.", "p"), ("tags.", "t")):
            keys = [c[len(prefix) :] for c in columns if c.startswith(prefix)]
            runs = [int(k[1]) for k in keys if k.startswith(first) and k[1].isdigit()]
            assert runs == sorted(runs, reverse=True)
