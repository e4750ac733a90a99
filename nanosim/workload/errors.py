"""The one error every trace loader raises, and the warning for rows a loader leaves out."""
from __future__ import annotations

from os import PathLike


class TraceError(ValueError):
    """Malformed or unusable trace input. ``str(err)`` is ``"path:line: problem"``.

    ``line`` is the 1-based physical line of the file (the header is line 1); problems with
    the file as a whole (empty file, unknown format, nothing left after filtering) name line 1.
    """

    def __init__(self, path: str | PathLike, line: int, problem: str) -> None:
        self.path = str(path)
        self.line = int(line)
        self.problem = problem
        super().__init__(f"{self.path}:{self.line}: {problem}")

    def __reduce__(self):  # keep it picklable (sweeps run points in a process pool)
        return (type(self), (self.path, self.line, self.problem))


class TraceWarning(UserWarning):
    """A loader dropped or changed rows on purpose (e.g. BurstGPT failures); gives the count."""
