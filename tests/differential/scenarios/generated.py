"""Scenarios whose inputs the harness generates (Hypothesis, seeded): a script of logging
calls, run through the fluent API and then as one client batch."""

import time

from scenario import scenario


@scenario(takes_input=True)
def generated_fluent_calls(mlflow, call, script):
    with mlflow.start_run() as run:
        for kind, key, value, step in script:
            if kind == "metric":
                call(mlflow.log_metric, key, value, step=step)
                # Points of one step logged within a millisecond tie on their timestamps, and
                # the latest value then rests on the clock, not on the tool.
                time.sleep(0.002)
            elif kind == "param":
                call(mlflow.log_param, key, value)
            else:
                call(mlflow.set_tag, key, value)
    call(mlflow.get_run, run.info.run_id)


@scenario(takes_input=True)
def generated_client_batch(mlflow, call, script):
    entities = mlflow.entities
    metrics, params, tags = [], [], []
    for kind, key, value, step in script:
        if kind == "metric":
            metrics.append(entities.Metric(key, value, 1000 + len(metrics), step))
        elif kind == "param":
            params.append(entities.Param(key, value))
        else:
            tags.append(entities.RunTag(key, value))
    client = mlflow.MlflowClient()
    run = client.create_run("0")
    call(client.log_batch, run.info.run_id, metrics=metrics, params=params, tags=tags)
    call(client.get_run, run.info.run_id)
