"""``python -m fastflow``: the same as the ``fastflow`` command."""

from fastflow.cli import entry

if __name__ == "__main__":
    entry()
