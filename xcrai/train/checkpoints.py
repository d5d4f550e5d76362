"""Where a training run keeps its checkpoints, and whether a checkpoint continues this run:
without PyTorch at import (a checkpoint is read with it only when resumed), so that the
command line can keep its output off them before anything heavy is imported."""

from __future__ import annotations

import os
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, cast

from xcrai.files import check_writable, hold_folder, load_torch_file, make_folder

if TYPE_CHECKING:
    from xcrai.train.loop import TrainConfig


class Folders(Protocol):
    """What these functions read of a run's options (:class:`xcrai.options.FitOptions`)."""

    @property
    def checkpoint_dir(self) -> Any: ...

    @property
    def resume(self) -> Any: ...

    @property
    def ensemble(self) -> int: ...

    @property
    def distributed(self) -> bool: ...

#: the training checkpoint's name in ``checkpoint_dir``
CHECKPOINT_FILE = "checkpoint.pth"
#: the key that marks a file as xcrai's training checkpoint
CHECKPOINT_KEY = "xcrai_training"


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


def hold_checkpoint_dir(o: Folders) -> AbstractContextManager[Any]:
    """Hold ``o.checkpoint_dir`` (created if need be) for one run: a second run given the
    same folder while this one trains is refused, naming it
    (:func:`xcrai.files.hold_folder`). Of a distributed run, the first process holds it
    (it alone writes checkpoints); without a ``checkpoint_dir`` nothing is held."""
    if o.checkpoint_dir is None or (o.distributed and os.environ.get("RANK", "0") != "0"):
        return nullcontext()
    return hold_folder(make_folder(o.checkpoint_dir, "checkpoint_dir"), "checkpoint_dir")


def check_checkpoint_dir(folder: Any, resume: Any = None, member: int | None = None) -> Path:
    """Create ``folder`` and check that its checkpoint can be written, before training.
    A checkpoint there from an earlier run is refused (a new run would overwrite it)
    unless this run resumes it: from that file, or from a copy beside it (``resume``).
    ``member``: the ensemble member whose folder it is, for the advice."""
    path = make_folder(folder, "checkpoint_dir")
    existing = path / CHECKPOINT_FILE
    resumed = None if resume is None else resume_file(resume)
    if existing.exists() and (resumed is None or resumed.resolve().parent != path.resolve()):
        advice = (
            f"continue it with resume={str(path)!r}"
            if member is None
            else f"continue that member with ensemble=1, seed= its seed, resume={str(path)!r}"
        )
        raise FileExistsError(
            f"checkpoint_dir: {str(existing)!r} holds the checkpoint of an earlier run, which "
            f"this run would overwrite; {advice}, or give another folder (or remove the file)"
        )
    check_writable(existing, "checkpoint_dir")
    return path


#: settings a resumed run may change: it can run longer and checkpoint more or less often
RESUMABLE_CHANGES = ("iterations", "finetune_iterations", "checkpoint_every")


def load_resume(
    path: Any, config: TrainConfig, fingerprint: dict[str, Any], explicit_log_every: Any
) -> dict[str, Any]:
    """The training checkpoint at ``path``, if it continues this very run: the same data,
    validation fields, masks, architecture and settings, and no further than asked."""
    path = Path(path)
    if path.is_dir():
        if not (path / CHECKPOINT_FILE).exists() and (path / "member-0").is_dir():
            raise FileNotFoundError(
                f"resume: {str(path)!r} holds the member-<i> folders of an ensemble, not one "
                "run's checkpoint; resume each member with ensemble=1, seed= its seed and "
                f"resume={str(path / 'member-0')!r} (and so on)"
            )
    path = resume_file(path)
    if not path.is_file():
        raise FileNotFoundError(f"resume: no training checkpoint at {str(path)!r}")
    state = load_torch_file(path, "resume", "training checkpoint")
    if not isinstance(state, dict) or CHECKPOINT_KEY not in state:
        raise ValueError(f"resume: {str(path)!r} is not an xcrai training checkpoint")
    saved_print = state.get("fingerprint")
    if saved_print is None:
        raise ValueError(
            f"resume: {str(path)!r} was written by an older xcrai that did not record which "
            "data it trained on, so continuing it could silently mix two datasets; start "
            "a new run"
        )
    keys = [*fingerprint, *(k for k in saved_print if k not in fingerprint)]
    differ = [k for k in keys if saved_print.get(k) != fingerprint.get(k)]
    if differ:
        found = "; ".join(
            f"{k}: {_short(saved_print.get(k))} in the checkpoint, {_short(fingerprint.get(k))} now"
            for k in differ
        )
        raise ValueError(
            f"resume: the checkpoint was trained with other {' and '.join(differ)} than given "
            f"now ({found}); resume with the same ones, or start a new run"
        )
    saved = state["train_config"]
    mine = config.to_dict()
    if explicit_log_every is None:  # derived from the run's length, which may grow
        mine["log_every"] = saved.get("log_every")
    differ = [k for k in mine if k not in RESUMABLE_CHANGES and saved.get(k) != mine[k]]
    if config.lr_schedule == "cosine" and saved.get("iterations") != config.iterations:
        differ.append("iterations")  # the cosine's course follows from them
    if differ:
        raise ValueError(
            "resume: the checkpoint was made with other settings: "
            + ", ".join(f"{k}={saved.get(k)!r} (now {mine.get(k)!r})" for k in differ)
        )
    done, total = int(state["iteration"]), config.iterations + config.finetune_iterations
    if done > total:
        raise ValueError(
            f"resume: the checkpoint has run {done} iterations, more than the {total} asked "
            f"for now (iterations + finetune_iterations); ask for at least {done}"
        )
    return state


def _short(value: Any) -> str:
    """A sha256 shortened for a message, "none", the variables, or an architecture's
    channels."""
    if isinstance(value, str):
        return f"sha256 {value[:12]}"
    if isinstance(value, dict) and "inputs" in value:
        return f"inputs {value['inputs']} and target {value['target']}"
    if isinstance(value, dict):
        return "channels " + "-".join(str(layer["out_channels"]) for layer in value["encoder"])
    return "none"
