"""Threads and forked processes log at once and lose nothing."""

import os
import threading

import fastflow


def test_eight_threads_lose_nothing(db_uri, mlflow):
    per_thread = 20_000
    run_ids = [None] * 8
    errors = []

    def work(index):
        try:
            with fastflow.start_run(run_name=f"thread-{index}") as run:
                run_ids[index] = run.info.run_id
                for step in range(per_thread):
                    fastflow.log_metric("loss", float(step), step=step)
                    if step % 1000 == 0:
                        fastflow.log_metric("shared_key", float(index), step=step)
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    fastflow.flush()
    oracle = mlflow.MlflowClient(tracking_uri=db_uri)
    for index, run_id in enumerate(run_ids):
        history = oracle.get_metric_history(run_id, "loss")
        assert sorted(m.step for m in history) == list(range(per_thread))
        run = oracle.get_run(run_id)
        assert run.info.status == "FINISHED"
        assert run.data.metrics["shared_key"] == float(index)


def test_threads_sharing_one_run_through_the_client(db_uri, mlflow):
    client = fastflow.MlflowClient()
    run_id = client.create_run("0").info.run_id

    def work(index):
        for step in range(5_000):
            client.log_metric(run_id, f"k{index}", float(step), step=step)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    client.set_terminated(run_id)
    oracle = mlflow.MlflowClient(tracking_uri=db_uri)
    for index in range(8):
        assert len(oracle.get_metric_history(run_id, f"k{index}")) == 5_000


def test_fork_child_starts_fresh(db_uri, mlflow):
    with fastflow.start_run() as parent:
        for step in range(1_000):
            fastflow.log_metric("before_fork", float(step), step=step)
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child
            code = 1
            try:
                os.close(read)
                assert fastflow.active_run() is None
                with fastflow.start_run() as child:
                    for step in range(1_000):
                        fastflow.log_metric("in_child", float(step), step=step)
                os.write(write, child.info.run_id.encode())
                code = 0
            finally:
                os._exit(code)
        os.close(write)
        for step in range(1_000, 2_000):
            fastflow.log_metric("before_fork", float(step), step=step)
        _, status = os.waitpid(pid, 0)
        child_run_id = os.read(read, 64).decode()
        os.close(read)
    assert os.waitstatus_to_exitcode(status) == 0
    oracle = mlflow.MlflowClient(tracking_uri=db_uri)
    assert len(oracle.get_metric_history(parent.info.run_id, "before_fork")) == 2_000
    assert len(oracle.get_metric_history(child_run_id, "in_child")) == 1_000
    assert oracle.get_run(child_run_id).info.status == "FINISHED"
