from __future__ import annotations

from fastflow.entities._base import _MlflowObject


class FileInfo(_MlflowObject):
    """An artifact: its path relative to the run's artifact root, and its size if a file."""

    def __init__(self, path, is_dir, file_size):
        self._path = path
        self._is_dir = is_dir
        self._bytes = file_size

    path = property(lambda self: self._path)
    is_dir = property(lambda self: self._is_dir)
    file_size = property(lambda self: self._bytes)
