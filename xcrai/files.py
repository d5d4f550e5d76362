"""Writing files safely: never a half-written file under the user's chosen name."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """A temporary path beside ``path``, renamed onto it when the block succeeds and
    removed when it fails, so ``path`` holds either its old content or the complete new one.

    Examples
    --------
    >>> with atomic_path("out.nc") as tmp:  # doctest: +SKIP
    ...     ds.to_netcdf(tmp)
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise FileNotFoundError(f"path: folder {str(path.parent)!r} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
