"""The same logging calls under MLflow 3.17.2 and under fastflow, each in a fresh interpreter
and a fresh store: what each call returns or raises (exception type, MLflow error code and
message) and the rows each store holds must be the same.

A scenario is a list of (name, code) cases run in order, with ``mlflow`` bound to the library
under test, ``client`` to its ``MlflowClient``, and ``new_run()`` creating a run. Run ids and
times of day differ between the two runs of a scenario, so they are compared as placeholders.
"""

import json

import pytest
from conftest import run_python

SCENARIO = r"""
import json, os, re, sys, time, sqlite3
from decimal import Decimal
from fractions import Fraction

# MLflow checks its own sessions differently under pytest.
os.environ.pop("PYTEST_CURRENT_TEST", None)
flavor, workdir, cases_path, out_path = sys.argv[1:5]
os.makedirs(workdir)
os.chdir(workdir)
import numpy as np

if flavor == "mlflow":
    import mlflow
else:
    import fastflow as mlflow
import logging

logging.disable(logging.CRITICAL)
db = os.path.join(workdir, "store.db")
mlflow.set_tracking_uri(f"sqlite:///{db}")
client = mlflow.MlflowClient()
started = int(time.time() * 1000)
runs = []


def new_run():
    run_id = client.create_run("0").info.run_id
    runs.append(run_id)
    return run_id


def placeholders(text):
    for i, run_id in enumerate(runs):
        text = text.replace(run_id, f"<run{i}>")
    near = lambda m: "NOW" if abs(int(m.group()) - started) < 3_600_000 else m.group()
    return re.sub(r"\b1[67]\d{11}\b", near, text)


def cell(value):
    if isinstance(value, str):
        return placeholders(value)
    if isinstance(value, bytes):
        return repr(value)
    if type(value) is int and abs(value - started) < 3_600_000:
        return "NOW"
    return value


namespace = dict(
    mlflow=mlflow, client=client, np=np, Decimal=Decimal, Fraction=Fraction, new_run=new_run,
    Metric=mlflow.entities.Metric, Param=mlflow.entities.Param, RunTag=mlflow.entities.RunTag,
)
outcomes = []
for name, code in json.load(open(cases_path)):
    namespace["result"] = None
    try:
        exec(code, namespace)
        outcome = ["returned", placeholders(repr(namespace["result"]))]
    except Exception as e:
        outcome = [type(e).__name__, getattr(e, "error_code", None),
                   placeholders(getattr(e, "message", str(e)))]
    outcomes.append([name] + outcome)
    active = mlflow.active_run()
    if active is not None and active.info.run_id not in runs:
        runs.append(active.info.run_id)
mlflow.flush() if flavor == "fastflow" else None
conn = sqlite3.connect(db)
queries = {
    "metrics": "SELECT run_uuid, key, value, timestamp, typeof(timestamp), step, typeof(step), "
    "is_nan FROM metrics",
    "latest_metrics": "SELECT run_uuid, key, value, timestamp, typeof(timestamp), step, "
    "typeof(step), is_nan FROM latest_metrics ORDER BY rowid",
    "params": "SELECT run_uuid, key, value FROM params ORDER BY rowid",
    "tags": "SELECT run_uuid, key, value, typeof(value) FROM tags "
    "WHERE key NOT LIKE 'mlflow.%' ORDER BY rowid",
}
tables = {t: [[cell(c) for c in row] for row in conn.execute(q)] for t, q in queries.items()}
# The points of a run are compared as a set: no reader sees the order of that table's rows,
# and two points a millisecond apart under one library may share one under the other.
tables["metrics"] = sorted({repr(row): row for row in tables["metrics"]}.values(), key=repr)
with open(out_path, "w") as f:
    json.dump({"outcomes": outcomes, "tables": tables}, f, default=repr)
"""


def _run(tmp_path, flavor, cases):
    cases_path = tmp_path / "cases.json"
    cases_path.write_text(json.dumps(cases))
    out = tmp_path / f"{flavor}.json"
    run_python(SCENARIO, flavor, tmp_path / flavor, cases_path, out)
    return json.loads(out.read_text())


def _same_under_both(tmp_path, cases):
    """Runs the cases under MLflow and under fastflow; asserts they agree, case by case
    and table by table, and returns MLflow's results."""
    want = _run(tmp_path, "mlflow", cases)
    got = _run(tmp_path, "fastflow", cases)
    for expected, actual in zip(want["outcomes"], got["outcomes"]):
        assert actual == expected
    for table, rows in want["tables"].items():
        assert got["tables"][table] == rows, table
    return want


def _outcome(result, name):
    return next(o[1:] for o in result["outcomes"] if o[0] == name)


# Values MLflow's client converts with float() (or .item()), and values it refuses.
METRIC_VALUES = [
    "1.5",
    "7",
    "True",
    "False",
    "'1.5'",
    "' 2 '",
    "'nan'",
    "'-inf'",
    "'abc'",
    "b'1'",
    "b'x'",
    "None",
    "np.bool_(True)",
    "np.float32(1.5)",
    "np.float64(2.5)",
    "np.int64(7)",
    "np.array(3.0)",
    "np.array([4.0])",
    "np.array([[5.0]])",
    "np.array([1.0, 2.0])",
    "np.array('abc')",
    "[1.0]",
    "{}",
    "1+2j",
    "Decimal('1.25')",
    "Fraction(1, 4)",
    "float('inf')",
    "float('nan')",
    "10**400",
    "-3",
]


def test_metric_values_are_converted_or_refused_as_mlflow_does(tmp_path):
    cases = [("start", "mlflow.start_run()")]
    for i, value in enumerate(METRIC_VALUES):
        cases.append((f"fluent {value}", f"result = mlflow.log_metric('f{i}', {value}, step={i})"))
    cases += [("end", "mlflow.end_run()"), ("run", "run_id = new_run()")]
    for i, value in enumerate(METRIC_VALUES):
        cases.append(
            (f"client {value}", f"result = client.log_metric(run_id, 'c{i}', {value}, 10, {i})")
        )
    for i, value in enumerate(METRIC_VALUES):
        cases.append(
            (
                f"batch {value}",
                f"client.log_batch(run_id, metrics=[Metric('b{i}', {value}, 10, 0)])",
            )
        )
    cases.append(("dict", "mlflow.log_metrics({'d1': True, 'd2': '2', 'd3': np.array(1.0)})"))
    cases.append(("dict refused", "mlflow.log_metrics({'ok': 1.0, 'bad': 'x'})"))
    cases.append(("dict unconvertible", "mlflow.log_metrics({'ok2': 1.0, 'bad': [1]})"))
    result = _same_under_both(tmp_path, cases)
    assert _outcome(result, "fluent True") == ["returned", "None"]
    assert _outcome(result, "client [1.0]")[0] == "TypeError"
    assert "metrics[0].value" in _outcome(result, "batch 'abc'")[2]


STEPS = [
    "1.5",
    "2.0",
    "True",
    "False",
    "0.0",
    "-1",
    "np.float64(1.5)",
    "1e20",
    "float('inf')",
    "'3'",
    "[1]",
    "None",
    "2**63",
    "float('nan')",
    "Decimal('2')",
    "Fraction(1, 2)",
    "1+0j",
]
TIMESTAMPS = STEPS + ["-5", "0"]


def test_steps_and_timestamps_are_stored_as_mlflow_stores_them(tmp_path):
    cases = [("run", "run_id = new_run()")]
    for i, step in enumerate(STEPS):
        cases.append((f"client step {step}", f"client.log_metric(run_id, 's{i}', 1.0, 10, {step})"))
    for i, timestamp in enumerate(TIMESTAMPS):
        cases.append(
            (f"client ts {timestamp}", f"client.log_metric(run_id, 't{i}', 1.0, {timestamp}, 1)")
        )
    for i, step in enumerate(STEPS):
        cases.append(
            (
                f"batch step {step}",
                f"client.log_batch(run_id, metrics=[Metric('a{i}', 1.0, 10, 0), "
                f"Metric('b{i}', 1.0, 10, {step})])",
            )
        )
    cases.append(("start", "mlflow.start_run()"))
    for i, step in enumerate(STEPS):
        cases.append((f"fluent step {step}", f"mlflow.log_metric('fs{i}', 1.0, step={step})"))
    for i, timestamp in enumerate(TIMESTAMPS):
        cases.append(
            (f"fluent ts {timestamp}", f"mlflow.log_metric('ft{i}', 1.0, timestamp={timestamp})")
        )
    cases.append(("dict step", "mlflow.log_metrics({'ds': 1.0}, step=2.5, timestamp=7.5)"))
    # Read back as MLflow reads them: a float step stays a float.
    cases.append(
        (
            "read back",
            "result = [(m.key, m.value, m.timestamp, m.step) for m in "
            "client.get_metric_history(run_id, 's0') + client.get_metric_history(run_id, 't0')]"
            " + sorted((m.key, m.step) for m in client.get_run(run_id).data._metric_objs)",
        )
    )
    cases.append(
        (
            "deleted run first",
            "r = new_run(); client.delete_run(r); client.log_metric(r, 'x', 1.0, step=Decimal(1))",
        )
    )
    result = _same_under_both(tmp_path, cases)
    assert _outcome(result, "client step 1.5") == ["returned", "None"]
    assert _outcome(result, "client step Decimal('2')")[1] == "BAD_REQUEST"
    assert _outcome(result, "client step 2**63")[1] == "INTERNAL_ERROR"


KEYS = ["None", "5", "1.5", "True", "b'k'", "('t',)", "''", "'a b'", "'a!b'", "'../x'", "'k' * 251"]
# (A bytes value of a RunTag given to log_batch is not here: MLflow stores it as a BLOB,
# fastflow refuses it.)
VALUES = ["None", "5", "1.5", "True", "''", "1+2j", "['l']", "'x' * 6001", "'x' * 8001"]


@pytest.mark.parametrize("truncate", ["true", "false"])
def test_param_and_tag_keys_and_values(tmp_path, truncate):
    cases = [
        ("env", f"import os; os.environ['MLFLOW_TRUNCATE_LONG_VALUES'] = '{truncate}'"),
        ("run", "run_id = new_run()"),
    ]
    for key in KEYS:
        cases += [
            (f"client log_param key {key}", f"result = client.log_param(run_id, {key}, 'v')"),
            (f"client set_tag key {key}", f"result = client.set_tag(run_id, {key}, 'v')"),
            (f"client log_metric key {key}", f"result = client.log_metric(run_id, {key}, 1.0)"),
            (
                f"batch key {key}",
                f"client.log_batch(run_id, metrics=[Metric({key}, 1.0, 1, 0)], "
                f"params=[Param({key}, 'v')], tags=[RunTag({key}, 'v')])",
            ),
            (f"batch param key {key}", f"client.log_batch(run_id, params=[Param({key}, 'v')])"),
            (f"batch tag key {key}", f"client.log_batch(run_id, tags=[RunTag({key}, 'v')])"),
        ]
    for i, value in enumerate(VALUES):
        cases += [
            (f"client log_param {value}", f"result = client.log_param(run_id, 'p{i}', {value})"),
            (f"client set_tag {value}", f"result = client.set_tag(run_id, 't{i}', {value})"),
            (f"batch param {value}", f"client.log_batch(run_id, params=[Param('bp{i}', {value})])"),
            (f"batch tag {value}", f"client.log_batch(run_id, tags=[RunTag('bt{i}', {value})])"),
        ]
    cases += [
        ("client log_param bytes", "result = client.log_param(run_id, 'pb', b'v')"),
        ("client set_tag bytes", "result = client.set_tag(run_id, 'tb', b'v')"),
        ("start", "mlflow.start_run()"),
    ]
    for key in KEYS:
        cases += [
            (f"fluent log_param key {key}", f"result = mlflow.log_param({key}, 'v')"),
            (f"fluent set_tag key {key}", f"result = mlflow.set_tag({key}, 'v')"),
            (f"fluent log_metric key {key}", f"result = mlflow.log_metric({key}, 1.0)"),
            (f"fluent log_params key {key}", f"result = mlflow.log_params({{{key}: 'v'}})"),
            (f"fluent set_tags key {key}", f"result = mlflow.set_tags({{{key}: 'v'}})"),
            (f"fluent log_metrics key {key}", f"result = mlflow.log_metrics({{{key}: 1.0}})"),
        ]
    for i, value in enumerate(VALUES):
        cases += [
            (f"fluent log_param {value}", f"result = mlflow.log_param('fp{i}', {value})"),
            (f"fluent set_tag {value}", f"result = mlflow.set_tag('ft{i}', {value})"),
            (f"fluent log_params {value}", f"mlflow.log_params({{'fps{i}': {value}}})"),
            (f"fluent set_tags {value}", f"mlflow.set_tags({{'fts{i}': {value}}})"),
        ]
    cases += [
        ("tag read back", "result = client.get_run(run_id).data.tags.get('bt0', 'missing')"),
        ("same param again", "result = client.log_param(run_id, 'p1', 5)"),
        ("changed param", "client.log_param(run_id, 'p1', 6)"),
        ("changed param in batch", "client.log_batch(run_id, params=[Param('p1', 7)])"),
    ]
    result = _same_under_both(tmp_path, cases)
    assert _outcome(result, "client set_tag key None") == [
        "MlflowException",
        "INVALID_PARAMETER_VALUE",
        "Missing value for required parameter 'key'.",
    ]
    assert _outcome(result, "client set_tag key 5")[:2] == ["MlflowException", "INTERNAL_ERROR"]
    assert _outcome(result, "batch tag 5")[0] == "TypeError"


def test_log_batch_checks_in_mlflows_order(tmp_path):
    cases = [
        ("run", "run_id = new_run()"),
        ("gone", "gone = new_run(); client.delete_run(gone)"),
        ("empty", "result = client.log_batch(run_id)"),
        ("empty async", "result = client.log_batch(run_id, synchronous=False)"),
        ("empty missing run", "result = client.log_batch('0' * 32)"),
        ("generator", "client.log_batch(run_id, metrics=(Metric('g', 1.0, 1, 0) for _ in 'ab'))"),
        ("dict", "client.log_batch(run_id, metrics={'x': 1.0})"),
        ("None timestamp", "client.log_batch(run_id, metrics=[Metric('a', 1.0, None, 0)])"),
        ("None step", "client.log_batch(run_id, metrics=[Metric('a', 1.0, 5, None)])"),
        ("bad run id", "client.log_batch('bad id!', metrics=[Metric('a', None, 5, 0)])"),
        ("None run id", "client.log_batch(None, params=[Param('a', 1)])"),
        ("missing run", "client.log_batch('0' * 32, metrics=[Metric('a', 1.0, 5, 0)])"),
        (
            "missing run, bad metric",
            "client.log_batch('0' * 32, metrics=[Metric('a', None, 5, 0)])",
        ),
        ("deleted run", "client.log_batch(gone, tags=[RunTag('a', 'b')])"),
        ("deleted run, bad metric", "client.log_batch(gone, metrics=[Metric('a', 'x', 5, 0)])"),
        (
            "bad name second",
            "client.log_batch(run_id, metrics=[Metric('ok', 1.0, 5, 0), Metric('b@d', 1.0, 5, 0)])",
        ),
        (
            "metric before param",
            "client.log_batch(run_id, metrics=[Metric('m', None, 5, 0)], "
            "params=[Param(None, 1)], tags=[RunTag(None, 1)])",
        ),
        (
            "param before tag",
            "client.log_batch(run_id, params=[Param('k' * 251, 1)], tags=[RunTag(None, 1)])",
        ),
        ("long name last", "client.log_batch(run_id, metrics=[Metric('k' * 251, None, 5, 0)])"),
        (
            "duplicate params",
            "client.log_batch(run_id, params=[Param('d', 1), Param('d', 1), "
            "Param('e', 2), Param('e', 3)])",
        ),
        ("duplicate tags", "client.log_batch(run_id, tags=[RunTag('dt', '1'), RunTag('dt', '2')])"),
        (
            "duplicate points",
            "client.log_batch(run_id, metrics=[Metric('dm', 1.0, 5, 0), "
            "Metric('dm', 1.0, 5, 0), Metric('dm', 2.0, 5, 0)])",
        ),
        ("param first", "client.log_param(run_id, 'p', 1)"),
        (
            "changed param stops the rest",
            "client.log_batch(run_id, "
            "metrics=[Metric('cp', 1.0, 5, 0)], params=[Param('p', 2), Param('new', 1)], "
            "tags=[RunTag('cpt', 'x')])",
        ),
        (
            "unbindable tag after params and metrics",
            "client.log_batch(run_id, "
            "metrics=[Metric('ut', 1.0, 5, 0)], params=[Param('up', 1)], "
            "tags=[RunTag('ok', 'x'), RunTag('bad', ['l'])])",
        ),
        ("run id with newline", "client.log_batch(run_id + '\\n', tags=[RunTag('a', 'b')])"),
        ("log_metric bad run id", "client.log_metric('bad id!', 'a', 1.0)"),
        ("log_metric missing run, bad value", "client.log_metric('0' * 32, 'a', None)"),
        ("log_metric deleted run, bad value", "client.log_metric(gone, 'a', None)"),
        ("log_param None run", "client.log_param(None, 'a', 1)"),
        ("set_tag None run", "client.set_tag(None, 'a', 1)"),
        ("log_metric None run", "client.log_metric(None, 'a', 1.0)"),
        ("log_param missing run, bad key", "client.log_param('0' * 32, 'a!', 1)"),
        ("fluent missing run", "mlflow.log_metric('a', None, run_id='0' * 32)"),
        ("fluent deleted run, bad value", "mlflow.log_metric('a', None, run_id=gone)"),
        ("fluent deleted run", "mlflow.log_metric('a', 1.0, run_id=gone)"),
    ]
    result = _same_under_both(tmp_path, cases)
    assert _outcome(result, "missing run, bad metric")[2] == (
        "Missing value for required parameter 'metrics[0].value'."
    )


def test_large_batches_are_split_as_mlflows_client_splits_them(tmp_path):
    cases = [
        ("run", "run_id = new_run()"),
        (
            "2000 metrics, 200 params, 200 tags",
            "client.log_batch(run_id, "
            "metrics=[Metric(f'm{i % 700}', float(i), 1000 + i, i) for i in range(2000)], "
            "params=[Param(f'p{i}', i) for i in range(200)], "
            "tags=[RunTag(f't{i}', str(i)) for i in range(200)])",
        ),
        (
            "read",
            "r = client.get_run(run_id).data; "
            "result = (len(r.metrics), len(r.params), len(r.tags), r.metrics['m5'])",
        ),
        (
            "900 metrics, 150 params",
            "client.log_batch(run_id, "
            "metrics=[Metric(f'x{i}', 1.0, 5, 0) for i in range(900)], "
            "params=[Param(f'xp{i}', 1) for i in range(150)])",
        ),
        (
            "bad metric in the second request",
            "client.log_batch(run_id, "
            "metrics=[Metric(f'y{i}', 1.0 if i != 1200 else None, 5, 0) for i in range(1500)])",
        ),
        (
            "bad tag in the second request",
            "client.log_batch(run_id, "
            "metrics=[Metric(f'z{i}', 1.0, 5, 0) for i in range(950)], "
            "tags=[RunTag(f'zt{i}', 'v' if i != 130 else 5) for i in range(150)])",
        ),
        (
            "unconvertible value: nothing sent",
            "client.log_batch(run_id, "
            "params=[Param('w', 1)], "
            "metrics=[Metric(f'w{i}', 1.0 if i != 1500 else [1], 5, 0) for i in range(1600)])",
        ),
        (
            "changed param in the second request",
            "client.log_batch(run_id, "
            "params=[Param(f'v{i % 150}', 1 if i < 150 else 2) for i in range(250)])",
        ),
        (
            "1500 metrics of a dict",
            "mlflow.log_metrics({f'fd{i}': float(i) for i in range(1500)}, run_id=run_id)",
        ),
        (
            "bad value in the second chunk of a dict",
            "mlflow.log_metrics("
            "{f'fe{i}': 1.0 if i != 1100 else 'x' for i in range(1500)}, run_id=run_id)",
        ),
        (
            "set_tags of 250",
            "mlflow.start_run(run_id=run_id); "
            "mlflow.set_tags({f'st{i}': i if i != 150 else 'x' * 9000 for i in range(250)})",
        ),
        ("log_params of 250", "mlflow.log_params({f'lp{i}': i for i in range(250)})"),
    ]
    result = _same_under_both(tmp_path, cases)
    assert _outcome(result, "2000 metrics, 200 params, 200 tags") == ["returned", "None"]
    # The tags include mlflow.runName.
    assert _outcome(result, "read") == ["returned", "(700, 200, 201, 1405.0)"]
    assert _outcome(result, "bad metric in the second request")[2] == (
        "Missing value for required parameter 'metrics[200].value'."
    )


def test_a_run_lists_metrics_params_and_tags_in_mlflows_order(tmp_path):
    cases = [
        ("start", "mlflow.start_run()"),
        (
            "metrics",
            "[mlflow.log_metric(k, 1.0, step=s) for s in range(3) "
            "for k in ('zeta', 'alpha', 'mid', 'Beta')]",
        ),
        ("more", "mlflow.log_metrics({'yy': 1.0, 'aa': 2.0, 'alpha': 3.0})"),
        ("params", "mlflow.log_params({'z': 1, 'a': 2}); mlflow.log_param('m', 3)"),
        ("tags", "mlflow.set_tags({'tz': 1, 'ta': 2}); mlflow.set_tag('tm', 3)"),
        (
            "other run",
            "other = new_run(); "
            "client.log_batch(other, metrics=[Metric('q', 1.0, 1, 0), Metric('b', 1.0, 1, 0), "
            "Metric('q', 2.0, 2, 1)], params=[Param('y', 1), Param('b', 2)], "
            "tags=[RunTag('y', '1'), RunTag('b', '2')])",
        ),
        ("interleaved", "[client.log_metric(other, k, 1.0) for k in ('k2', 'k1', 'q', 'k0')]"),
        (
            "order",
            "run = mlflow.active_run().info.run_id; data = client.get_run(run).data; "
            "result = (list(data.metrics), list(data.params), [k for k in data.tags "
            "if not k.startswith('mlflow.')], [m.key for m in data._metric_objs])",
        ),
        (
            "other order",
            "data = client.get_run(other).data; "
            "result = (list(data.metrics), list(data.params), [k for k in data.tags "
            "if not k.startswith('mlflow.')])",
        ),
        (
            "search order",
            "found = client.search_runs(['0'], order_by=['attributes.start_time']); "
            "result = [list(r.data.metrics) for r in found]",
        ),
    ]
    result = _same_under_both(tmp_path, cases)
    order = eval(_outcome(result, "order")[1])
    assert order[0] == ["zeta", "alpha", "mid", "Beta", "yy", "aa"]
    assert order[1] == ["z", "a", "m"]


NAMES = ["None", "''", "5", "b'n'", "'x' * 501", "'x' * 500", "'ok'", "' '", "'a/b'", "'é'"]


def test_experiment_names_and_tags(tmp_path):
    cases = []
    for name in NAMES:
        cases += [
            (f"create {name}", f"result = client.create_experiment({name})"),
            (f"fluent create {name}", f"result = mlflow.create_experiment({name})"),
            (f"set {name}", f"result = mlflow.set_experiment({name}).experiment_id"),
            (
                f"by name {name}",
                f"e = client.get_experiment_by_name({name}); result = e and e.experiment_id",
            ),
        ]
    cases += [
        ("tag None key", "client.set_experiment_tag('0', None, 'v')"),
        ("tag int key", "client.set_experiment_tag('0', 5, 'v')"),
        ("tag bad key", "client.set_experiment_tag('0', 'a!', 'v')"),
        ("tag long key", "client.set_experiment_tag('0', 'k' * 251, 'v')"),
        ("tag long value", "client.set_experiment_tag('0', 'k', 'x' * 20001)"),
        ("tag None value", "client.set_experiment_tag('0', 'k2', None)"),
        ("tag again", "client.set_experiment_tag('0', 'k2', 'again')"),
        ("fluent tags", "mlflow.set_experiment_tags({'a': 1, None: 2})"),
        ("tags order", "result = list(client.get_experiment('0').tags)"),
        ("id None", "result = client.get_experiment(None).name"),
        ("id int", "result = client.get_experiment(0).name"),
        ("id float", "result = client.get_experiment(0.0).name"),
        ("id bad", "client.get_experiment('abc')"),
        ("id missing", "client.get_experiment('999')"),
        ("tags not strings", "client.create_experiment('t1', tags={'a': None, 'b': 2})"),
        (
            "tags",
            "result = client.get_experiment(client.create_experiment("
            "'t2', tags={'z': None, 'a': 'x'})).tags",
        ),
        ("tag long key first", "client.create_experiment('t3', tags={'k' * 251: 2})"),
        ("tag bad key", "client.create_experiment('t4', tags={'a!': 1})"),
        ("runs artifact location", "client.create_experiment(None, artifact_location='runs:/x')"),
        ("get_run bad id", "client.get_run('bad id!')"),
        ("get_run None", "client.get_run(None)"),
        ("get_run missing", "client.get_run('0' * 32)"),
    ]
    result = _same_under_both(tmp_path, cases)
    assert _outcome(result, "set 5") == [
        "MlflowException",
        "INVALID_PARAMETER_VALUE",
        "Invalid experiment name: 5. Expects a string.",
    ]
    assert _outcome(result, "fluent create 'ok'")[1] == "RESOURCE_ALREADY_EXISTS"


TRUNCATION = r"""
import io, logging, os, re, sys

os.environ.pop("PYTEST_CURRENT_TEST", None)
flavor, workdir = sys.argv[1:3]
os.makedirs(workdir)
os.chdir(workdir)
if flavor == "mlflow":
    import mlflow
else:
    import fastflow as mlflow
seen = []
handler = logging.Handler()
handler.emit = lambda record: seen.append(record.getMessage())
logging.getLogger().addHandler(handler)
sys.stderr = captured = io.StringIO()
mlflow.set_tracking_uri(f"sqlite:///{workdir}/store.db")
with mlflow.start_run():
    mlflow.log_param("long", "v" * 6001)
    mlflow.set_tag("long", "t" * 8001)
sys.stderr = sys.__stderr__
lines = [line for line in captured.getvalue().splitlines() if "truncated" in line]
print(len(seen), *(re.sub(r"^\S+ \S+ ", "", line).replace(" ", "_") for line in lines))
"""


def test_truncated_values_are_reported_as_mlflow_reports_them(tmp_path):
    # On stderr, from MLflow's logger (so MLflow's logging settings apply), not to the root.
    want = run_python(TRUNCATION, "mlflow", tmp_path / "mlflow")
    got = run_python(TRUNCATION, "fastflow", tmp_path / "fastflow")
    assert got == want
    assert want[0] == "0" and len(want) == 3
    assert want[1].startswith("WARNING_mlflow.utils.validation:_Param_value_'vvv")
