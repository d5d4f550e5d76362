"""Writing files safely: never a half-written file under the user's chosen name.

Temporary files sit beside their target as ``.NAME.xcrai-PID-TOKEN.tmp``. A process
killed outright (SIGKILL, a power cut) cannot remove its own; the next write to the same
target removes those whose process is gone, and never another live process's.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import secrets
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

logger = logging.getLogger("xcrai")

#: errors of the file system that mean "no room" or "cannot write here any more"
WRITE_ERRNOS = frozenset(
    getattr(errno, name) for name in ("ENOSPC", "EFBIG", "EDQUOT", "EIO", "EROFS")
    if hasattr(errno, name)
)  # fmt: skip


class WriteError(OSError):
    """Writing an output failed part-way (full disk, file size limit, I/O error)."""


def temp_pattern(path: Path) -> re.Pattern[str]:
    """Names of xcrai's temporary files for ``path``; group 1 is the writer's process id."""
    return re.compile(rf"^\.{re.escape(path.name)}\.xcrai-(\d+)-[0-9a-f]+\.tmp$")


def create_temp(path: str | os.PathLike[str]) -> Path:
    """Create an empty temporary file beside ``path`` and return its name.

    The file is created as any writer creates files (mode ``0o666`` less the umask),
    not private to its owner as :func:`tempfile.mkstemp` makes it, because it becomes
    the output.

    Examples
    --------
    >>> tmp = create_temp("out.nc")  # doctest: +SKIP
    >>> tmp.name  # doctest: +SKIP
    '.out.nc.xcrai-4242-9f86d081.tmp'
    """
    path = Path(path)
    for _ in range(100):
        tmp = path.parent / f".{path.name}.xcrai-{os.getpid()}-{secrets.token_hex(4)}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        return tmp
    raise FileExistsError(f"path: could not find a free temporary name beside {str(path)!r}")


def remove_stale_temps(path: str | os.PathLike[str]) -> list[Path]:
    """Remove temporary files for ``path`` left by xcrai processes that no longer exist.

    Only names of xcrai's pattern are touched, and only when their process id is not
    alive on this machine; files of this process and of live processes are kept.

    Returns
    -------
    list of Path
        The files removed.

    Examples
    --------
    >>> remove_stale_temps("out.nc")  # doctest: +SKIP
    [PosixPath('.out.nc.xcrai-4242-9f86d081.tmp')]
    """
    path = Path(path)
    if os.name != "posix":  # os.kill(pid, 0) would terminate the process on Windows
        return []
    pattern = temp_pattern(path)
    removed: list[Path] = []
    try:
        names = os.listdir(path.parent)
    except OSError:  # a folder we may write to but not list: nothing to clean
        return removed
    for name in names:
        match = pattern.match(name)
        if match is None or int(match[1]) == os.getpid() or _alive(int(match[1])):
            continue
        stale = path.parent / name
        try:
            stale.unlink(missing_ok=True)
        except OSError as error:  # e.g. another user's file in a sticky folder such as /tmp
            logger.info("could not remove %s, a stale temporary file: %s", stale, error)
            continue
        removed.append(stale)
        logger.info("removed %s, left by process %s, which no longer runs", stale, match[1])
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):  # another user's, or not a pid
        return True
    return True


def check_writable(path: str | os.PathLike[str], argument: str) -> None:
    """Fail now, not after the work, if ``path`` cannot be written.

    ``path`` must not be a folder, and its folder must exist and let this process
    create (and remove) a file of the temporary name the real write uses.

    Parameters
    ----------
    path : path
        The file to be written later.
    argument : str
        Name of the argument or option that gave ``path``, for the error message.

    Raises
    ------
    IsADirectoryError, FileNotFoundError, PermissionError

    Examples
    --------
    >>> check_writable("/read-only/out.nc", "output")  # doctest: +SKIP
    PermissionError: output: cannot create files in folder '/read-only' ...
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(
            f"{argument}: {str(path)!r} is a folder; expected the name of a file to write "
            f"in it, e.g. {str(path / 'out.nc')!r}"
        )
    if not path.parent.is_dir():
        raise FileNotFoundError(f"{argument}: folder {str(path.parent)!r} does not exist")
    try:
        create_temp(path).unlink()
    except OSError as error:
        raise PermissionError(
            f"{argument}: cannot create files in folder {str(path.parent)!r} "
            f"({error.strerror or error}); choose a folder you can write to"
        ) from None


def make_folder(folder: str | os.PathLike[str], argument: str) -> Path:
    """Create ``folder`` (and its parents) unless it exists; a PermissionError naming
    ``argument`` when that cannot be done.

    Examples
    --------
    >>> make_folder("runs/checkpoints", "checkpoint_dir")  # doctest: +SKIP
    PosixPath('runs/checkpoints')
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"{argument}: {str(folder)!r} is a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise PermissionError(
            f"{argument}: cannot create folder {str(folder)!r} "
            f"({error.strerror or error}); choose a folder you can write to"
        ) from None
    return folder


def refuse_overwriting_inputs(output: str | os.PathLike[str], inputs: Mapping[str, object]) -> None:
    """A ValueError if ``output`` is one of ``inputs`` (same file, symbolic or hard link).

    Parameters
    ----------
    output : path
        The file about to be written (the ``output`` argument).
    inputs : mapping of str to path or None
        The files read, by the name of their argument; None values are skipped.

    Examples
    --------
    >>> refuse_overwriting_inputs("data.nc", {"data": "data.nc"})  # doctest: +SKIP
    ValueError: output: 'data.nc' is the data file; choose another path
    """
    output = Path(output)
    for name, source in inputs.items():
        if source is None:
            continue
        source = Path(str(source))
        if _same_file(source, output) or source.resolve() == output.resolve():
            raise ValueError(
                f"output: {str(output)!r} is the {name} file ({str(source)!r}); choose another path"
            )


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def is_write_failure(error: BaseException) -> bool:
    """Whether ``error`` is the file system refusing more data (not a bug, not bad input).

    OSErrors with ENOSPC, EFBIG, EDQUOT, EIO or EROFS; and netCDF's errors ("NetCDF: HDF
    error") when raised while xarray was storing or closing the output.
    """
    if isinstance(error, OSError):
        return error.errno in WRITE_ERRNOS
    if not isinstance(error, RuntimeError) or not str(error).startswith("NetCDF:"):
        return False
    trace = error.__traceback__
    while trace is not None:
        code = trace.tb_frame.f_code
        writing = code.co_name in ("__setitem__", "sync", "close", "prepare_variable")
        if writing and "backends" in Path(code.co_filename).parts:
            return True
        trace = trace.tb_next
    return False


def first_line(error: BaseException, default: str | None = None) -> str:
    """The first line of ``error``'s message, for a one-line error of our own; when it
    has none, ``default`` (by default the error's type)."""
    text = str(error)
    if text:
        return text.splitlines()[0]
    return type(error).__name__ if default is None else default


def write_error(argument: str, path: str | os.PathLike[str], error: BaseException) -> WriteError:
    """The error to raise when writing ``path`` failed with ``error``."""
    reason = first_line(error)
    return WriteError(
        f"{argument}: could not write {str(path)!r}: {reason} (disk full or file size limit?)"
    )


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """A temporary path beside ``path``, renamed onto it when the block succeeds and
    removed when it fails, so ``path`` holds either its old content or the complete new one.

    Stale temporary files for ``path`` of processes that no longer exist are removed
    first (see :func:`remove_stale_temps`). The new file's mode follows the umask.

    Examples
    --------
    >>> with atomic_path("out.nc") as tmp:  # doctest: +SKIP
    ...     ds.to_netcdf(tmp)
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise FileNotFoundError(f"path: folder {str(path.parent)!r} does not exist")
    remove_stale_temps(path)
    tmp = create_temp(path)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
