"""Where a training run keeps its checkpoints: paths only, without PyTorch, so that the
command line can keep its output off them before anything heavy is imported."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol, cast


class Folders(Protocol):
    """What these functions read of a run's options (:class:`xcrai.options.FitOptions`)."""

    @property
    def checkpoint_dir(self) -> Any: ...

    @property
    def resume(self) -> Any: ...

    @property
    def ensemble(self) -> int: ...

#: the training checkpoint's name in ``checkpoint_dir``
CHECKPOINT_FILE = "checkpoint.pth"


def resume_file(resume: Any) -> Path:
    """The checkpoint ``resume=`` names: the file, or ``CHECKPOINT_FILE`` in the folder."""
    path = Path(resume)
    return path / CHECKPOINT_FILE if path.is_dir() else path


def member_folders(o: Folders) -> list[Path | None]:
    """Each ensemble member's checkpoint folder, ``checkpoint_dir/member-<i>`` (None
    without a ``checkpoint_dir``)."""
    if o.checkpoint_dir is None:
        return [None] * o.ensemble
    return [Path(o.checkpoint_dir) / f"member-{i}" for i in range(o.ensemble)]


def checkpoint_files(o: Folders) -> dict[str, Path]:
    """The training checkpoints a run with options ``o`` reads or writes, by argument:
    ``resume``'s file, and the file in ``checkpoint_dir`` (in each ``member-<i>`` folder of
    an ensemble); for the command line to keep its output off them."""
    files: dict[str, Path] = {}
    if o.resume is not None:
        files["resume"] = resume_file(o.resume)
    if o.checkpoint_dir is not None and o.ensemble == 1:
        files["checkpoint_dir"] = Path(o.checkpoint_dir) / CHECKPOINT_FILE
    elif o.checkpoint_dir is not None:
        for i, folder in enumerate(member_folders(o)):
            files[f"checkpoint_dir (member-{i})"] = cast(Path, folder) / CHECKPOINT_FILE
    return files
