"""Writing files safely: never a half-written file under the user's chosen name.

Temporary files sit beside their target as ``.NAME.xcrai-PID-TOKEN.tmp``. A process
killed outright (SIGKILL, a power cut) cannot remove its own; the next write to the same
target removes those whose process is gone, and never another live process's.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import re
import secrets
import stat
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

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
        As the path is a folder, its folder is missing, or cannot be written.
    ValueError
        When the path exists and is not a regular file (:func:`refuse_special`).

    Examples
    --------
    >>> check_writable("/read-only/out.nc", "output")  # doctest: +SKIP
    PermissionError: output: cannot create files in folder '/read-only' ...
    """
    path = Path(path)
    refuse_special(path, argument)
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


def load_torch_file(path: str | os.PathLike[str], argument: str, what: str) -> Any:
    """The contents of the PyTorch file at ``path``, read safely: ``torch.load`` with
    ``weights_only=True`` onto the CPU, numpy's scalar and dtype classes (which CRAI's
    checkpoints hold) the only objects allowed besides tensors and plain containers.

    Every file xcrai reads with torch (models, training checkpoints, VGG weights) goes
    through here. A file torch cannot read gives
    ``ValueError("<argument>: '<path>' is not a readable <what> (...): <error>")``.
    """
    import numpy as np
    import torch

    try:  # numpy >= 2 keeps the scalar reconstructor in numpy._core
        from numpy._core.multiarray import scalar
    except ImportError:  # pragma: no cover - numpy < 2
        from numpy.core.multiarray import scalar  # type: ignore[no-redef]
    safe: list[Any] = [np.dtype, type(np.dtype(np.float32)), type(np.dtype(np.float64)), scalar]
    try:
        with torch.serialization.safe_globals(safe):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for bad files
        text = first_line(error, default="")
        if "weights_only" in str(error):  # torch's advice to load unsafely: not ours to give
            text = "it holds objects other than tensors and plain containers"
        raise ValueError(
            f"{argument}: {str(path)!r} is not a readable {what} (truncated, corrupt, or "
            f"holding objects that are not safe to load): {type(error).__name__}: {text}"
        ) from None


def write_error(argument: str, path: str | os.PathLike[str], error: BaseException) -> WriteError:
    """The error to raise when writing ``path`` failed with ``error``."""
    reason = first_line(error)
    return WriteError(
        f"{argument}: could not write {str(path)!r}: {reason} (disk full or file size limit?)"
    )


@contextmanager
def atomic_path(
    path: str | os.PathLike[str], *, overwrite: bool = True, argument: str = "path"
) -> Iterator[Path]:
    """A temporary path beside ``path``, moved onto it when the block succeeds and
    removed when it fails, so ``path`` holds either its old content or the complete new one.

    Stale temporary files for ``path`` of processes that no longer exist are removed
    first (see :func:`remove_stale_temps`). The new file's mode follows the umask.

    Parameters
    ----------
    path : path
        The file to write.
    overwrite : bool
        Whether a file at ``path`` may be replaced. Without it, the finished file is
        linked into place, which fails if ``path`` exists by then (another program wrote
        it while the work ran): that file is left as it is, the result is kept under
        another name beside it, and :class:`OutputAppeared` names both. Either way only a
        regular file is ever replaced (see :func:`refuse_special`).
    argument : str
        Name of the argument that gave ``path``, for the errors.

    Raises
    ------
    OutputAppeared
        Without ``overwrite``, when ``path`` exists once the block has finished.
    ValueError
        When ``path`` exists and is not a regular file (a FIFO, a device, a socket).

    Examples
    --------
    >>> with atomic_path("out.nc", overwrite=False, argument="output") as tmp:  # doctest: +SKIP
    ...     ds.to_netcdf(tmp)
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise FileNotFoundError(f"{argument}: folder {str(path.parent)!r} does not exist")
    refuse_special(path, argument)
    remove_stale_temps(path)
    tmp = create_temp(path)
    try:
        yield tmp
        if overwrite:
            refuse_special(path, argument)  # it may have appeared while the block ran
            os.replace(tmp, path)
        else:
            _place_new(tmp, path, argument)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class OutputAppeared(FileExistsError):
    """The output was created by someone else while xcrai worked; the result was kept
    under another name (:attr:`kept`)."""

    def __init__(self, message: str, kept: Path) -> None:
        super().__init__(message)
        self.kept = kept


def refuse_special(path: str | os.PathLike[str], argument: str) -> None:
    """A ValueError if ``path`` exists and is not a regular file (or a link to one).

    Replacing a FIFO, a device node or a socket with a regular file would break whatever
    reads or writes it; such a path is never an output.

    Examples
    --------
    >>> refuse_special("/dev/null", "output")  # doctest: +SKIP
    ValueError: output: '/dev/null' is a character device, not a regular file; ...
    """
    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):  # folders are refused by check_writable
        return
    kinds = ((stat.S_ISFIFO, "FIFO (named pipe)"), (stat.S_ISCHR, "character device"),
             (stat.S_ISBLK, "block device"), (stat.S_ISSOCK, "socket"))  # fmt: skip
    kind = next((name for test, name in kinds if test(mode)), "special file")
    raise ValueError(
        f"{argument}: {str(path)!r} is a {kind}, not a regular file; xcrai writes regular "
        "files only and will not replace it; choose another path"
    )


def _place_new(tmp: Path, path: Path, argument: str) -> None:
    """Move ``tmp`` to ``path`` unless ``path`` exists: then keep ``tmp``'s content under
    a free name beside ``path`` and raise :class:`OutputAppeared` naming it."""
    try:
        _link_or_claim(tmp, path)
    except FileExistsError:
        kept = _keep_aside(tmp, path)
        raise OutputAppeared(
            f"{argument}: {str(path)!r} was created by another program while xcrai worked "
            f"and is left as it is; the result is in {str(kept)!r} (rename it, or pass "
            "--overwrite / overwrite=True to replace the other file)",
            kept,
        ) from None


def _link_or_claim(tmp: Path, path: Path) -> None:
    """Rename ``tmp`` to ``path``, failing with FileExistsError (``tmp`` kept) when
    ``path`` exists. A hard link does it in one step; on file systems without hard
    links, ``path`` is claimed with an exclusive create, then replaced."""
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise
    except OSError as error:
        if error.errno not in _NO_LINKS:
            raise
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        os.replace(tmp, path)
        return
    tmp.unlink()


#: errors of os.link that mean "this file system has no hard links"
_NO_LINKS = frozenset(
    getattr(errno, name) for name in ("EPERM", "ENOTSUP", "EOPNOTSUPP", "ENOSYS", "EMLINK")
    if hasattr(errno, name)
)  # fmt: skip


def _keep_aside(tmp: Path, path: Path) -> Path:
    """Link ``tmp`` to a free name ``STEM.xcrai-TOKEN.SUFFIX`` beside ``path``; remove
    ``tmp``; return the new name."""
    for _ in range(100):
        kept = path.with_name(f"{path.stem}.xcrai-{secrets.token_hex(4)}{path.suffix}")
        try:
            _link_or_claim(tmp, kept)
        except FileExistsError:
            continue
        return kept
    raise FileExistsError(f"path: could not find a free name beside {str(path)!r}")


#: the lock file that :func:`hold_folder` keeps in a folder
LOCK_NAME = ".xcrai.lock"


class FolderInUse(OSError):
    """A folder is held by another run (:func:`hold_folder`)."""


@contextmanager
def hold_folder(folder: str | os.PathLike[str], argument: str) -> Iterator[Path]:
    """Hold ``folder`` for this run: a second run (another process, or another call in
    this one) that asks for it while this block runs is refused.

    The hold is an exclusive ``flock`` on ``folder/.xcrai.lock``, which the kernel
    releases when the process ends however it ends (a SIGKILL or a crash leaves nothing
    stuck); the file holds the holder's process id, for the error message. Where
    ``fcntl`` does not exist (Windows), folders are not held.

    Raises
    ------
    FolderInUse
        When another run holds ``folder``.

    Examples
    --------
    >>> with hold_folder("runs/ck", "checkpoint_dir"):  # doctest: +SKIP
    ...     train(...)
    """
    folder = Path(folder)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield folder
        return
    lock = folder / LOCK_NAME
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as error:
        raise PermissionError(
            f"{argument}: cannot create {str(lock)!r} ({error.strerror or error}); choose "
            "a folder you can write to"
        ) from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise FolderInUse(
                f"{argument}: {str(folder)!r} is in use by another xcrai run (process "
                f"{holder}); wait for it to end, or give another folder"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield folder
    finally:
        os.close(fd)  # releases the lock


def write_torch(
    payload: Any, path: str | os.PathLike[str], argument: str, *, overwrite: bool = True
) -> Path:
    """``torch.save(payload)`` to ``path`` atomically; a failed write (full disk, file size
    limit) raises :class:`xcrai.files.WriteError` naming ``argument`` and leaves no file.
    ``overwrite``: as :func:`xcrai.files.atomic_path` takes it."""
    import torch  # here: the rest of this module needs none

    path = Path(path)
    check_writable(path, argument)  # a folder, a missing or read-only folder: named now
    with atomic_path(path, overwrite=overwrite, argument=argument) as tmp:
        try:
            # through a file object: torch names the archive inside after a path, and the
            # temporary name would make every save of one model a file of another sha256
            with open(tmp, "wb") as handle:
                torch.save(payload, handle)
        except (OSError, RuntimeError) as error:  # torch.save only writes: a write failure
            raise write_error(argument, path, error) from error
    return path


def file_sha256(path: str | Path) -> str:
    """Hexadecimal sha256 of the file at ``path``, as the registry records it (and as
    ``pooch.file_hash`` gives it: pooch itself is imported only to download)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
