"""One SQLite per process: fastflow, Python's sqlite3 and MLflow share a store in one process.

Each scenario runs in a fresh interpreter, so a crash (SIGBUS from a WAL index reset under a
live mapping) shows as a signal exit instead of killing pytest.
"""

import os
import shutil
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor

import fastflow

POINTS = 150_000
RUNS = 3

# Logs RUNS runs of POINTS points while Python's sqlite3 reads, checks and checkpoints the
# store (between runs and from a thread during them) and MLflow's client reads it back.
SHARED_SCENARIO = textwrap.dedent(
    """
    import sqlite3, sys, threading
    import fastflow
    import mlflow

    db = sys.argv[1]
    points, runs, history_run = map(int, sys.argv[2:5])
    uri = "sqlite:///" + db

    stop = threading.Event()
    reads, failures = [], []

    def reader():
        try:
            while not stop.is_set():
                conn = sqlite3.connect(db, timeout=30)
                try:
                    # A full count of a growing table would cost more than the writing.
                    reads.append(conn.execute("SELECT count(*) FROM runs").fetchone()[0])
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                finally:
                    conn.close()
                stop.wait(0.02)
        except BaseException as e:
            failures.append(repr(e))

    fastflow.set_tracking_uri(uri)
    fastflow.MlflowClient(uri)  # the store and its schema exist before anyone reads
    # MLflow's engine keeps its pooled connection open while fastflow writes.
    client = mlflow.MlflowClient(tracking_uri=uri)
    run_ids = []
    for r in range(runs):
        thread = threading.Thread(target=reader)
        thread.start()
        with fastflow.start_run() as run:
            for step in range(points):
                fastflow.log_metric("m", float(step), step=step)
                if step == points // 2:
                    fastflow.flush()
                    assert len(client.search_runs(["0"])) == r + 1
        stop.set()
        thread.join()
        stop.clear()
        run_ids.append(run.info.run_id)
        conn = sqlite3.connect(db, timeout=30)
        try:
            assert conn.execute("SELECT count(*) FROM metrics").fetchone()[0] == points * (r + 1)
            conn.execute("PRAGMA wal_checkpoint(FULL)").fetchone()
        finally:
            conn.close()
    conn = sqlite3.connect(db, timeout=30)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        for run_id in run_ids:
            steps = conn.execute(
                "SELECT count(DISTINCT step) FROM metrics WHERE run_uuid = ?", (run_id,)
            ).fetchone()[0]
            assert steps == points, (run_id, steps)
    finally:
        conn.close()
    found = client.search_runs(["0"], max_results=100)
    assert sorted(r.info.run_id for r in found) == sorted(run_ids)
    assert all(r.data.metrics["m"] == float(points - 1) for r in found)
    if history_run >= 0:
        history = client.get_metric_history(run_ids[history_run], "m")
        assert sorted(m.step for m in history) == list(range(points)), len(history)
    assert not failures, failures
    assert reads, "the reader thread never read"
    verdict = fastflow._fastflow._sqlite_library()[0]
    print("OK", verdict, len(reads))
    """
)


def _run(script, *args, env=None, timeout=240):
    return subprocess.run(
        [sys.executable, "-c", script, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def test_detection_says_shared_on_a_system_library_python(tmp_path):
    fastflow.MlflowClient(f"sqlite:///{tmp_path / 'detect.db'}")
    verdict, ours, python, safe_mode = fastflow._fastflow._sqlite_library()
    assert verdict == "shared", (ours, python)
    assert python is not None and python[0] == ours[0]
    assert not safe_mode


def test_fastflow_python_sqlite3_and_mlflow_share_a_store_in_one_process(tmp_path):
    repetitions = 10
    dirs = [tmp_path / f"rep{i}" for i in range(repetitions)]
    for d in dirs:
        d.mkdir()

    def repetition(i):
        # MLflow's get_metric_history builds an object per point (about 6 s for 150,000
        # here): every fourth repetition reads one run's full history back through it.
        history_run = i // 4 % RUNS if i % 4 == 0 else -1
        return _run(SHARED_SCENARIO, dirs[i] / "mlflow.db", POINTS, RUNS, history_run)

    with ThreadPoolExecutor(max_workers=3) as pool:
        results = list(pool.map(repetition, range(repetitions)))
    for i, result in enumerate(results):
        assert result.returncode == 0, (i, result.returncode, result.stderr[-3000:])
        assert result.stdout.split()[:2] == ["OK", "shared"], result.stdout


# A second copy of SQLite in the process, made by loading the library under another file name
# (RTLD_LOCAL), driven through ctypes against fastflow's store while fastflow logs: what a
# Python whose _sqlite3 carries its own SQLite does to fastflow.
SECOND_COPY_SCENARIO = textwrap.dedent(
    """
    import ctypes, os, sys, threading
    import fastflow

    db, copy, points = sys.argv[1], sys.argv[2], int(sys.argv[3])
    lib = ctypes.CDLL(copy, mode=os.RTLD_LOCAL)
    p = ctypes.c_void_p
    lib.sqlite3_open_v2.argtypes = [ctypes.c_char_p, ctypes.POINTER(p), ctypes.c_int, p]
    lib.sqlite3_busy_timeout.argtypes = [p, ctypes.c_int]
    lib.sqlite3_prepare_v2.argtypes = [p, ctypes.c_char_p, ctypes.c_int, ctypes.POINTER(p), p]
    lib.sqlite3_step.argtypes = [p]
    lib.sqlite3_column_int64.argtypes = [p, ctypes.c_int]
    lib.sqlite3_column_int64.restype = ctypes.c_int64
    lib.sqlite3_finalize.argtypes = [p]
    lib.sqlite3_close_v2.argtypes = [p]

    lib.sqlite3_extended_errcode.argtypes = [p]

    def expect(rc, conn, wanted=0):
        assert rc == wanted, (rc, lib.sqlite3_extended_errcode(conn))

    def count_in_second_copy():
        conn = p()
        expect(lib.sqlite3_open_v2(db.encode(), ctypes.byref(conn), 2, None), conn)
        lib.sqlite3_busy_timeout(conn, 30000)
        stmt = p()
        sql = b"SELECT count(*) FROM metrics"
        expect(lib.sqlite3_prepare_v2(conn, sql, -1, ctypes.byref(stmt), None), conn)
        expect(lib.sqlite3_step(stmt), conn, 100)  # SQLITE_ROW
        n = lib.sqlite3_column_int64(stmt, 0)
        lib.sqlite3_finalize(stmt)
        # The close is where a lone copy checkpoints and deletes the WAL.
        expect(lib.sqlite3_close_v2(conn), None)
        return n

    fastflow.set_tracking_uri("sqlite:///" + db)
    fastflow.MlflowClient("sqlite:///" + db)  # the store and its schema exist before reads
    stop = threading.Event()
    failures = []

    def reader():
        try:
            while not stop.is_set():
                count_in_second_copy()
                stop.wait(0.005)
        except BaseException as e:
            failures.append(repr(e))

    run_ids = []
    for r in range(3):
        thread = threading.Thread(target=reader)
        thread.start()
        with fastflow.start_run() as run:
            for step in range(points):
                fastflow.log_metric("m", float(step), step=step)
                if step % 20000 == 0:
                    fastflow.flush()
        stop.set()
        thread.join()
        stop.clear()
        run_ids.append(run.info.run_id)
        count_in_second_copy()
    assert not failures, failures
    print("RUNS", *run_ids, fastflow._fastflow._sqlite_library()[3])
    """
)

VERIFY = textwrap.dedent(
    """
    import sqlite3, sys
    db, points, run_ids = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    for run_id in run_ids:
        steps = conn.execute(
            "SELECT count(DISTINCT step) FROM metrics WHERE run_uuid = ?", (run_id,)
        ).fetchone()[0]
        assert steps == points, (run_id, steps)
    print("VERIFIED")
    """
)


def test_safe_mode_holds_against_a_second_sqlite_copy(tmp_path):
    verdict, (library, _), _, _ = fastflow._fastflow._sqlite_library()
    copy = tmp_path / "libsqlite3-second-copy.so"
    shutil.copyfile(library, copy)
    env = dict(os.environ, FASTFLOW_SQLITE_SAFE_MODE="1")
    for i in range(3):
        db = tmp_path / f"safe{i}.db"
        result = _run(SECOND_COPY_SCENARIO, db, copy, 50_000, env=env)
        assert result.returncode == 0, (result.returncode, result.stderr[-3000:])
        words = result.stdout.split()
        assert words[0] == "RUNS" and words[-1] == "True", result.stdout
        verified = _run(VERIFY, db, 50_000, *words[1:-1])
        assert verified.returncode == 0, verified.stderr[-3000:]


# What SQLite reports as allocated (SQLITE_STATUS_MEMORY_USED), read through the library
# fastflow and Python's sqlite3 both call: 0 while its allocation statistics are off.
STATISTICS_SCENARIO = textwrap.dedent(
    """
    import ctypes, sys

    db, python_first = sys.argv[1], sys.argv[2] == "1"
    if python_first:
        import sqlite3  # starts SQLite
        import fastflow
    else:
        import fastflow
        import sqlite3
    fastflow.set_tracking_uri("sqlite:///" + db)
    with fastflow.start_run() as run:
        for step in range(1000):
            fastflow.log_metric("m", float(step), step=step)
    fastflow.flush()
    conn = sqlite3.connect(db)
    rows = conn.execute(
        "SELECT count(*) FROM metrics WHERE run_uuid = ?", (run.info.run_id,)
    ).fetchone()[0]
    library = ctypes.CDLL(fastflow._fastflow._sqlite_library()[1][0])
    used, highest = ctypes.c_int64(), ctypes.c_int64()
    assert library.sqlite3_status64(0, ctypes.byref(used), ctypes.byref(highest), 0) == 0
    print(rows, used.value)
    """
)


def test_sqlite_allocation_statistics_are_off_unless_sqlite_started_first(tmp_path):
    # Importing fastflow turns SQLite's per-allocation bookkeeping off (a global mutex on
    # every allocation); where Python's sqlite3 started SQLite first, it stays on. Both ways
    # every point lands and Python's sqlite3 works on the same store.
    for python_first, statistics_on in (("0", False), ("1", True)):
        db = tmp_path / f"python-first-{python_first}.db"
        done = _run(STATISTICS_SCENARIO, db, python_first)
        assert done.returncode == 0, done.stderr
        rows, used = map(int, done.stdout.split())
        assert rows == 1000
        assert (used > 0) == statistics_on, (python_first, used)
