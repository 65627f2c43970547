"""Output directories a command creates are removed again if it fails before producing anything.

``removed_on_failure(path, has_results)``: if ``path`` did not exist when the command started
and the command raises (a typed error, a crash or Ctrl-C), the directory is deleted, unless
``has_results(path)`` says it already holds work worth keeping (a fit's completed stages, which
a rerun reuses; a recording's samples). A directory that existed before is never touched.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger(__name__)


@contextmanager
def removed_on_failure(
    path: str | Path, has_results: Callable[[Path], bool] = lambda p: False
) -> Iterator[Path]:
    path = Path(path)
    existed = path.exists()
    try:
        yield path
    except BaseException:
        if not existed and path.is_dir() and not has_results(path):
            shutil.rmtree(path, ignore_errors=True)
            log.info("removed %s: the command failed before writing results there", path)
        raise
