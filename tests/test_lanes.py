"""Points wait in their thread's lane on the way to the writer: whatever happens to the
thread, they reach the store, in order, without anyone calling flush."""

import os
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time

import fastflow


def _count(db, run_id, key=None):
    with sqlite3.connect(db) as conn:
        query = "SELECT COUNT(*) FROM metrics WHERE run_uuid = ?"
        args = [run_id]
        if key is not None:
            query += " AND key = ?"
            args.append(key)
        return conn.execute(query, args).fetchone()[0]


def _wait_for(predicate, seconds=10.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


def test_a_thread_that_exits_without_flush_delivers_its_points(db_uri, tmp_path):
    db = tmp_path / "fastflow.db"
    run = fastflow.start_run()
    run_id = run.info.run_id

    def work(name, points):
        for step in range(points):
            fastflow.log_metric(name, float(step), step=step, run_id=run_id)

    # Fewer points than a lane holds, so nothing moves them on but the collector.
    threads = [threading.Thread(target=work, args=(f"t{i}", 100)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert _wait_for(lambda: _count(db, run_id) == 400)
    fastflow.end_run()


def test_points_of_an_idle_thread_become_visible_without_flush(db_uri, tmp_path):
    db = tmp_path / "fastflow.db"
    logged = threading.Event()
    release = threading.Event()

    def work():
        with fastflow.start_run() as run:
            ids.append(run.info.run_id)
            for step in range(10):
                fastflow.log_metric("idle", 1.0, step=step)
            logged.set()
            release.wait(30)

    ids = []
    thread = threading.Thread(target=work)
    thread.start()
    try:
        assert logged.wait(30)
        assert _wait_for(lambda: _count(db, ids[0], "idle") == 10, seconds=5)
    finally:
        release.set()
        thread.join()


def test_make_visible_commits_for_other_readers_at_once(db_uri, tmp_path):
    db = tmp_path / "fastflow.db"
    with fastflow.start_run() as run:
        for step in range(5000):
            fastflow.log_metric("m", float(step), step=step)
        fastflow.make_visible()
        assert _count(db, run.info.run_id, "m") == 5000


def test_reads_in_the_process_see_every_point_logged_before_them(db_uri):
    client = fastflow.MlflowClient()
    with fastflow.start_run() as run:
        for step in range(3000):
            fastflow.log_metric("m", float(step), step=step)
        history = client.get_metric_history(run.info.run_id, "m")
        assert [m.step for m in history] == list(range(3000))
        assert client.get_run(run.info.run_id).data.metrics["m"] == 2999.0


def test_a_killed_process_keeps_the_points_its_idle_thread_logged(tmp_path):
    """A thread logs a few points and waits; the process is killed later. The points were
    in a lane, not in the queue: the collector must have journaled them."""
    db = tmp_path / "kill.db"
    uri = f"sqlite:///{db}"
    script = textwrap.dedent(
        """
        import sys, time, fastflow
        fastflow.set_tracking_uri(sys.argv[1])
        run = fastflow.start_run()
        for step in range(7):
            fastflow.log_metric("few", float(step), step=step)
        print(run.info.run_id, flush=True)
        time.sleep(60)
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script, uri],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "FASTFLOW_FLUSH_INTERVAL_MS": "60000"},
    )
    run_id = proc.stdout.readline().strip()
    # Well past the collector's round (milliseconds), well before the writer's interval.
    time.sleep(1.0)
    proc.kill()
    proc.wait(timeout=30)
    subprocess.run(
        [sys.executable, "-c", "import sys, fastflow; fastflow.sync(sys.argv[1])", uri],
        check=True,
        timeout=120,
    )
    assert _count(db, run_id, "few") == 7
