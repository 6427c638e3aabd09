"""What the bridge changed in MLflow, in order, so that ``uninstall`` can give it back."""

from __future__ import annotations

_steps: list = []


def remember(restore) -> None:
    _steps.append(restore)


def setattr_remembered(owner, name, value) -> None:
    previous = getattr(owner, name)
    setattr(owner, name, value)
    remember(lambda: setattr(owner, name, previous))


def undo_all() -> None:
    while _steps:
        _steps.pop()()
