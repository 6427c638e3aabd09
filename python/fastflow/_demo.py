"""``python -m fastflow demo``: a small hyperparameter sweep logged to ./mlflow.db."""

from __future__ import annotations

import math
import random
import time

import fastflow


def _train(learning_rate: float, epochs: int, steps_per_epoch: int) -> float:
    """A stand-in for a training loop: a noisy loss that falls towards a plateau (lower and
    sooner the larger the learning rate), logged every step."""
    plateau = 0.05 + 0.02 / learning_rate**0.5
    loss = 2.5
    accuracy = 0.0
    step = 0
    for epoch in range(epochs):
        for _ in range(steps_per_epoch):
            trend = plateau + (2.5 - plateau) * math.exp(-learning_rate * step / 1000)
            loss = trend * random.uniform(0.9, 1.1)
            fastflow.log_metric("train_loss", loss, step=step)
            step += 1
        accuracy = 1.0 - math.exp(-(epoch + 1) * learning_rate * 3)
        fastflow.log_metrics({"val_loss": trend * 1.1, "val_accuracy": accuracy}, step=epoch)
    return accuracy


def main() -> None:
    fastflow.set_experiment("fastflow-demo")
    started = time.perf_counter()
    best = (None, -1.0)
    with fastflow.start_run(run_name="sweep", description="learning-rate sweep") as parent:
        fastflow.log_params({"model": "mlp", "epochs": 10, "steps_per_epoch": 2000})
        for learning_rate in (0.01, 0.03, 0.1, 0.3):
            with fastflow.start_run(run_name=f"lr-{learning_rate}", nested=True) as child:
                fastflow.log_param("learning_rate", learning_rate)
                accuracy = _train(learning_rate, epochs=10, steps_per_epoch=2000)
                if accuracy > best[1]:
                    best = (child.info.run_id, accuracy)
        fastflow.log_metric("best_val_accuracy", best[1])
        fastflow.set_tag("best_run_id", best[0])
    elapsed = time.perf_counter() - started
    points = 4 * (10 * 2000 + 20) + 1
    print(f"Logged {points:,} metric points in 1 parent and 4 child runs in {elapsed:.2f} s.")
    print(f"Tracking URI: {fastflow.get_tracking_uri()}")
    print(f"Experiment:   fastflow-demo, parent run {parent.info.run_id}")
    print("Look at it:    fastflow runs ls")
    print("Open it with:  mlflow ui --backend-store-uri sqlite:///mlflow.db   (or: fastflow ui)")
