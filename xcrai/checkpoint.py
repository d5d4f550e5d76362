"""Reading CRAI checkpoints and reading/writing xcrai's own, safely.

Files are loaded with ``torch.load(weights_only=True)``: only tensors and plain
containers are unpickled, plus numpy's scalar and dtype classes, which CRAI
checkpoints trained with ``--normalize-data`` hold in ``train_stats``.
"""

from __future__ import annotations

import copy
import os
import warnings
from pathlib import Path
from typing import Any, Literal, overload

import numpy as np
import torch

from xcrai.callsite import user_stacklevel
from xcrai.choices import check_padding, check_time_context
from xcrai.files import file_sha256, load_torch_file
from xcrai.model import (
    ENSEMBLE_KEY,
    FORMAT_KEY,
    FORMAT_VERSION,
    CraiModel,
    Ensemble,
    ModelConfig,
    save_model,
)
from xcrai.nn import architecture_from_crai, network
from xcrai.schema import check_config, check_ensemble, check_format
from xcrai.zoo import REGISTRY

#: the key of an xcrai file that holds an ensemble (``{"labels": [...], "members": [...]}``)



def _read(path: Path) -> Any:
    with open(path, "rb") as handle:
        magic = handle.read(8)
    if magic[:3] == b"CDF" or magic == b"\x89HDF\r\n\x1a\n":
        raise ValueError(
            f"model: {str(path)!r} is a netCDF (or HDF5) file, not a model; a model is a "
            "PyTorch file (.pth), an xcrai file or a registered name"
        )
    return load_torch_file(path, "model", "PyTorch checkpoint")


@overload
def load_model(  # type: ignore[overload-overlap]  # "all" is also a str
    source: str | os.PathLike[str] | CraiModel,
    *,
    padding: str = ...,
    time_context: tuple[int, int] | None = ...,
    label: Literal["all"],
    inputs: list[str] | tuple[str, ...] | None = ...,
    target: str | None = ...,
) -> Ensemble: ...


@overload
def load_model(
    source: str | os.PathLike[str] | CraiModel,
    *,
    padding: str = ...,
    time_context: tuple[int, int] | None = ...,
    label: str | None = ...,
    inputs: list[str] | tuple[str, ...] | None = ...,
    target: str | None = ...,
) -> CraiModel: ...


def load_model(
    source: str | os.PathLike[str] | CraiModel,
    *,
    padding: str = "auto",
    time_context: tuple[int, int] | None = None,
    label: str | None = None,
    inputs: list[str] | tuple[str, ...] | None = None,
    target: str | None = None,
) -> CraiModel | Ensemble:
    """Load a CRAI checkpoint or an xcrai model file.

    Parameters
    ----------
    source : path, registered name, or CraiModel
        A CRAI checkpoint (with or without ``labels``, keys with or without a
        ``module.`` prefix), a file written by :meth:`CraiModel.save`, or a name
        from :mod:`xcrai.zoo` (e.g. ``"crai-20crtasgn72"``, bundled).
    padding : {"auto", "zeros", "global"}
        For CRAI checkpoints, which do not record it: "auto" decides from the
        data's grid at infill time (global for uniform 360-degree longitude).
        For xcrai files, "auto" keeps what the file says.
    time_context : (int, int), optional
        Past and future steps (P, F) the model stacks as channels. Needed for
        a CRAI checkpoint with several input channels; a single-channel model
        has (0, 0).
    label : str, optional
        Which of a CRAI checkpoint's labels (saved models) to load; the last one by
        default. ``"all"`` loads every label of a multi-label checkpoint as an
        :class:`~xcrai.model.Ensemble`, which ``infill`` turns into a ``member``
        dimension (as CRAI stacks its labels' outputs).
    inputs : list of str, optional
        For a CRAI checkpoint of several input variables (CRAI's ``--data-types``),
        their names in CRAI's order, which the checkpoint does not record; infill
        reads them from the Dataset. Without it, a CRAI checkpoint reads one variable.
    target : str, optional
        For a CRAI checkpoint trained with ``--n-target-data 1``: the name of the
        target variable (the last of CRAI's ``--data-types``), which the network
        outputs from the ``inputs``.

    Returns
    -------
    CraiModel, or Ensemble for ``label="all"``

    Examples
    --------
    >>> model = xcrai.load_model("20crtasgn72.pth", padding="global")  # doctest: +SKIP
    """
    if isinstance(source, CraiModel):
        if label == "all":
            raise ValueError("label: 'all' needs a checkpoint file, got a loaded CraiModel")
        model = source
    else:
        if not isinstance(source, (str, os.PathLike)):
            raise TypeError(
                "model: expected a path to a checkpoint or a CraiModel, "
                f"got {type(source).__name__}"
            )
        path = Path(source)
        defaults: dict[str, Any] = {}
        if not path.is_file() and isinstance(source, str) and source in REGISTRY:
            path, defaults = REGISTRY.fetch(source)
        if not path.is_file():
            raise FileNotFoundError(
                f"model: no checkpoint file at {str(path)!r}, and no registered model of that "
                f"name (registered: {REGISTRY.names()})"
            )
        checkpoint = _read(path)
        sha = file_sha256(path)
        if defaults:  # loaded by name: the card's padding is the default
            padding = defaults.get("padding", "auto") if padding == "auto" else padding
        else:  # a registered file loaded by its path (the bundled demo model): the card's
            # variable, units, grid and time context, but padding stays "auto" (which is
            # the card's "global" on the model's own grid, and zeros on a regional crop)
            known = REGISTRY.find_sha256(sha)
            defaults = known.options if known is not None else {}
        time_context = time_context or defaults.get("time_context")
        if isinstance(checkpoint, dict) and FORMAT_KEY in checkpoint:
            if inputs is not None or target is not None:
                raise ValueError(
                    "inputs: an xcrai model file records its variables; inputs= and target= "
                    "are for CRAI checkpoints"
                )
            _check_format(checkpoint, path)
            if ENSEMBLE_KEY in checkpoint:
                ensemble = _ensemble_from_native(checkpoint, path, sha)
                if label == "all":
                    return Ensemble(
                        tuple(_with(m, padding, time_context) for m in ensemble),
                        ensemble.labels,
                    )
                if label is None:
                    raise _EnsembleFile(
                        f"label: {str(path)!r} holds an ensemble of {len(ensemble)} models "
                        f"{list(ensemble.labels)}; load every one with label='all' (infill "
                        "does that for a path), or one of them by its label"
                    )
                if label not in ensemble.labels:
                    raise ValueError(f"label: expected one of {list(ensemble.labels)} or "
                                     f"'all', got {label!r}")  # fmt: skip
                return _with(ensemble[ensemble.labels.index(label)], padding, time_context)
            model = _from_native(checkpoint, path, sha)
        else:
            variables = _crai_variables(inputs, target)
            labels = [label] if label != "all" else _every_label(checkpoint, path)
            models = [
                _from_crai(
                    checkpoint, path, sha, one, copy.deepcopy(defaults), variables, time_context
                )
                for one in labels
            ]
            if label == "all":
                members = [_with(m, padding, time_context) for m in models]
                return Ensemble(tuple(members), tuple(map(str, labels)))
            model = models[0]
        if label == "all":
            raise ValueError(
                f"label: 'all' asks for every label of a multi-label CRAI checkpoint, but "
                f"{str(path)!r} is an xcrai model file (one model)"
            )
    return _with(model, padding, time_context)


def _with(model: CraiModel, padding: str, time_context: tuple[int, int] | None) -> CraiModel:
    if padding != "auto" or time_context is not None:
        check_padding(padding)
        model = model.with_options(
            padding=None if padding == "auto" else padding, time_context=time_context
        )
    return model


def _every_label(checkpoint: Any, path: Path) -> list[str]:
    """The labels of a multi-label CRAI checkpoint; a ValueError for one with one."""
    labels = (
        [str(x) for x in checkpoint["labels"]]
        if isinstance(checkpoint, dict) and "labels" in checkpoint
        else []
    )
    if len(labels) < 2:
        raise ValueError(
            f"label: 'all' asks for every label of a multi-label CRAI checkpoint, but "
            f"{str(path)!r} holds {'one, ' + repr(labels[0]) if labels else 'no labels'}; "
            "load it without label="
        )
    return labels


def _check_format(checkpoint: dict[str, Any], path: Path) -> None:
    """A ValueError naming the file when its ``xcrai_format`` is not a version this xcrai
    reads (an integer from 1 to ``FORMAT_VERSION``)."""
    try:
        check_format(checkpoint[FORMAT_KEY])
    except ValueError as error:
        raise ValueError(
            f"model: {str(path)!r} is not a readable xcrai model file: {error} (the version "
            "of xcrai's file format); the file is corrupt or was not written by xcrai"
        ) from None
    if checkpoint[FORMAT_KEY] > FORMAT_VERSION:
        raise ValueError(
            f"model: {str(path)!r} was written by a newer xcrai (format "
            f"{checkpoint[FORMAT_KEY]}); upgrade xcrai to read it"
        )


def _from_native(checkpoint: dict[str, Any], path: Path, sha: str, member: str = "") -> CraiModel:
    """The model of an xcrai model file (``member``: which of an ensemble file's, for
    messages)."""
    what = f"{str(path)!r}{member}"
    missing = [key for key in ("config", "state_dict") if not isinstance(checkpoint.get(key), dict)]
    if missing:
        absent = " or ".join(map(repr, missing))
        raise ValueError(
            f"model: {what} is an xcrai model file without {absent} "
            f"(it has {sorted(map(str, checkpoint))}); it is incomplete or was not written by "
            "CraiModel.save"
        )
    try:
        check_config(checkpoint["config"])
        provenance = {**(checkpoint["config"].get("provenance") or {}), "file": path.name}
        config = ModelConfig.from_dict({**checkpoint["config"], "provenance": provenance})
        _check_consistent(config)
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(
            f"model: {what} has a configuration xcrai cannot read "
            f"({type(error).__name__}: {error}); the file is incomplete or corrupt"
        ) from None
    network(config.architecture).check(config.architecture)
    warn_non_finite(checkpoint["state_dict"], path)
    return _built(config, checkpoint["state_dict"], path, sha)


def _check_consistent(config: ModelConfig) -> None:
    """A ValueError naming the field of a configuration whose fields are each valid but do
    not fit together: the time context and the network's input channels, the steady mask
    and the grid."""
    arch, n_inputs = config.architecture, config.n_inputs
    if arch.in_channels % n_inputs:
        raise ValueError(
            f"its inputs: {n_inputs} variables cannot share the network's "
            f"{arch.in_channels} input channels"
        )
    if config.time_context is not None:
        try:
            check_time_context(config.time_context, arch.in_channels // n_inputs)
        except ValueError as error:
            raise ValueError(f"its {error}") from None
    shape = (config.grid or {}).get("shape")
    if config.steady_mask is not None and shape and list(config.steady_mask.shape) != list(shape):
        raise ValueError(
            f"its steady_mask: expected the grid's shape {list(shape)}, got "
            f"{list(config.steady_mask.shape)}"
        )


def _crai_state_dict(checkpoint: Any, path: Path, label: str | None) -> tuple[dict, dict]:
    """The state dict and the entry holding it, from either CRAI layout."""
    if not isinstance(checkpoint, dict):
        raise ValueError(f"model: {str(path)!r} holds no CRAI or xcrai checkpoint")
    if "labels" in checkpoint:
        labels = [str(x) for x in checkpoint["labels"]]
        chosen = labels[-1] if label is None else str(label)
        if chosen not in labels or chosen not in checkpoint:
            present = [x for x in labels if x in checkpoint]
            raise ValueError(f"label: expected one of {present}, got {label!r}")
        entry = checkpoint[chosen]
    else:
        entry, chosen = checkpoint, None
    if not isinstance(entry, dict) or not isinstance(entry.get("model"), dict):
        if any(str(k).startswith(("enc_", "dec_")) for k in entry):
            raise ValueError(
                f"model: {str(path)!r} is in the layout of CRAI's 2020 master branch "
                "(enc_1/dec_1 keys), which xcrai does not read"
            )
        raise ValueError(f"model: {str(path)!r} holds no CRAI or xcrai checkpoint (no 'model')")
    state = {k.removeprefix("module."): v for k, v in entry["model"].items()}
    return state, {"label": chosen, "n_iter": entry.get("n_iter")}


def warn_non_finite(state: dict[str, Any], path: Path) -> None:
    """A UserWarning naming the tensors of ``state`` that hold NaN or infinity."""
    bad = [
        key
        for key, value in state.items()
        if isinstance(value, torch.Tensor)
        and value.is_floating_point()
        and not bool(torch.isfinite(value).all())
    ]
    if bad:
        warnings.warn(
            f"model: {str(path)!r} has non-finite weights (NaN or infinity) in {len(bad)} "
            f"tensor(s), e.g. {bad[:3]}; its output will be NaN or meaningless (a training "
            "run that diverged?)",
            UserWarning,
            stacklevel=user_stacklevel(),
        )


def _crai_variables(inputs: Any, target: Any) -> tuple[tuple[str, ...], str | None] | None:
    """``(inputs, target)`` checked, or None for a single-variable CRAI checkpoint."""
    if inputs is None:
        if target is not None:
            raise ValueError("target: a model with a target variable needs inputs=[...] too")
        return None
    if isinstance(inputs, str) or not all(isinstance(v, str) and v for v in inputs):
        raise ValueError(f"inputs: expected a list of variable names, got {inputs!r}")
    names = tuple(inputs)
    if not names or len(set(names)) != len(names):
        raise ValueError(f"inputs: expected distinct variable names, got {list(names)}")
    if target is not None and (not isinstance(target, str) or target in names):
        raise ValueError(
            f"target: expected the name of a variable that is not an input, got {target!r}"
        )
    return names, target


def _from_crai(
    checkpoint: Any,
    path: Path,
    sha: str,
    label: str | None,
    card: dict[str, Any],
    variables: tuple[tuple[str, ...], str | None] | None = None,
    time_context: tuple[int, int] | None = None,
) -> CraiModel:
    """A CraiModel from a CRAI checkpoint; ``card`` holds what its registry card knows
    and the file cannot say (``grid``, ``variable``, ``units``); ``variables`` the
    ``(inputs, target)`` of a several-variable model."""
    state, entry = _crai_state_dict(checkpoint, path, label)
    inputs, target = variables if variables is not None else (None, None)
    n_inputs = 1 if inputs is None else len(inputs)
    if time_context is not None:
        check_time_context(time_context)
    architecture = architecture_from_crai(state, n_inputs, time_context, str(path))
    if architecture.in_channels % n_inputs:
        raise ValueError(
            f"inputs: the model takes {architecture.in_channels} input channel(s), which "
            f"{n_inputs} variables {list(inputs or ())} cannot share (a window of P + F + 1 "
            "steps of each); check CRAI's --data-types for this checkpoint"
        )
    stats = checkpoint.get("train_stats", checkpoint.get("stat_target"))
    means: list[Any] = []
    stds: list[Any] = []
    if stats:  # CRAI saves empty lists when it trained without normalisation
        means, stds = list(np.atleast_1d(stats["mean"])), list(np.atleast_1d(stats["std"]))
    n_variables = n_inputs + (target is not None)
    if means and len(means) != n_variables:
        raise ValueError(
            f"inputs: {str(path)!r} holds normalisation statistics of {len(means)} "
            f"variable(s), but {n_variables} were named "
            f"({list(inputs or ()) + ([target] if target else []) or 'one, by default'}); "
            "pass inputs=[...] (and target=) as CRAI's --data-types named them"
        )
    mean = std = None
    pairs = None
    if means and inputs is None:
        mean, std = float(means[0]), float(stds[0])
    elif means:
        pairs = tuple((float(m), float(s)) for m, s in zip(means, stds, strict=True))
    window = architecture.in_channels // n_inputs
    tc = (0, 0) if window == 1 else time_context
    output = target or (inputs[0] if inputs else card.get("variable"))
    config = ModelConfig(
        architecture=architecture,
        padding="auto",
        time_context=tc,
        mean=mean,
        std=std,
        variable=output,  # a CRAI checkpoint does not record these three;
        units=card.get("units"),  # the registry may know them
        grid=card.get("grid"),
        provenance={"source": "CRAI checkpoint", "file": path.name, "sha256": sha, **entry},
        inputs=inputs,
        target=target,
        stats=pairs,
    )
    weights = {k: v for k, v in state.items() if not k.endswith("mask_conv.weight")}
    warn_non_finite(weights, path)
    return _built(config, weights, path, sha)


def _built(config: ModelConfig, weights: Any, path: Path, sha: str) -> CraiModel:
    """The model of a file; weights that do not fit its configuration (missing, extra or
    of another shape) are refused naming the file, not with torch's RuntimeError."""
    try:
        return CraiModel(config, weights, sha256=sha)
    except RuntimeError as error:
        first = str(error).strip().splitlines()
        detail = " ".join(line.strip() for line in first[1:3]) if len(first) > 1 else str(error)
        raise ValueError(
            f"model: the weights in {str(path)!r} do not fit its network ({detail})"
        ) from None


def _ensemble_from_native(checkpoint: dict[str, Any], path: Path, sha: str) -> Ensemble:
    """The Ensemble that :func:`save_model` wrote."""
    entry = checkpoint[ENSEMBLE_KEY]
    try:
        check_ensemble(entry)
    except (KeyError, ValueError) as error:
        raise ValueError(
            f"model: {str(path)!r} is an xcrai ensemble file xcrai cannot read "
            f"({type(error).__name__}: {error}); the file is incomplete or corrupt"
        ) from None
    models = [
        _from_native(member, path, sha, f" (ensemble member {i}, {label!r})")
        for i, (member, label) in enumerate(zip(entry["members"], entry["labels"], strict=True))
    ]
    return Ensemble(tuple(models), tuple(entry["labels"]))


def load_any(source: Any, **kwargs: Any) -> CraiModel | Ensemble:
    """:func:`load_model`, except that a file holding an ensemble (an xcrai ensemble file,
    or a CRAI checkpoint of several labels) gives every member when no label is named: what
    ``infill`` and ``xcrai infill`` do with a path."""
    if kwargs.get("label") is not None or isinstance(source, CraiModel):
        return load_model(source, **kwargs)
    try:
        return load_model(source, **kwargs)
    except _EnsembleFile:
        return load_model(source, **{**kwargs, "label": "all"})


class _EnsembleFile(ValueError):
    """An xcrai ensemble file loaded without a label."""


__all__ = [
    "check_time_context",
    "load_model",
    "save_model",
]
