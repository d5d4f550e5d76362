"""`CraiModel`: a network plus everything needed to infill with it."""

from __future__ import annotations

import copy
import hashlib
import html
import io
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from xcrai._version import __version__
from xcrai.bounds import check_bounds
from xcrai.bounds import describe as describe_bounds
from xcrai.choices import check_padding, check_time_context
from xcrai.files import file_sha256, write_torch
from xcrai.firstguess import FirstGuess
from xcrai.nn import Architecture, architecture_from_dict, build_network, network
from xcrai.skill import PROVENANCE_KEY, summary
from xcrai.skill import describe as describe_skill

#: the key and version of xcrai's own model files (the format :func:`save_model` writes)
FORMAT_KEY = "xcrai_format"
FORMAT_VERSION = 1
#: the key of an ensemble's members in a model file
ENSEMBLE_KEY = "ensemble"


def pack_mask(mask: np.ndarray) -> dict[str, Any]:
    """A 2-D boolean mask as plain data: ``{"shape": [H, W], "bits": hex}`` (8 points a byte,
    ``np.packbits`` order), small enough for a checkpoint's configuration."""
    return {"shape": list(mask.shape), "bits": np.packbits(mask, axis=None).tobytes().hex()}


def unpack_mask(packed: dict[str, Any]) -> np.ndarray:
    """The boolean mask that :func:`pack_mask` wrote."""
    height, width = (int(n) for n in packed["shape"])
    bits = np.frombuffer(bytes.fromhex(packed["bits"]), np.uint8)
    return np.unpackbits(bits, count=height * width).astype(bool).reshape(height, width)


@dataclass(frozen=True, eq=False)  # eq below: a NumPy field does not compare as a tuple item
class ModelConfig:
    """Everything about a model except its weights; plain data, saved in checkpoints.

    Attributes
    ----------
    architecture : Architecture
        The network's configuration: one of the kinds in :data:`xcrai.nn.NETWORKS` (the
        U-Net, or, read from CRAI checkpoints, CRAI's networks with recurrent memory
        (ConvLSTM, TrajGRU) or attention).
    padding : {"zeros", "global", "auto"}
        "auto": global where the data's longitude covers 360 degrees uniformly.
    time_context : (int, int) or None
        Past and future steps stacked as channels; None when unknown (a CRAI
        checkpoint with several input channels does not record the split).
    mean, std : float or None
        Normalisation ``(x - mean) / std`` applied before the network and undone
        after it; None for none.
    variable, units : str or None
        What the model was trained on.
    grid : dict or None
        ``{"shape": [nlat, nlon], "lat": [first, last], "lon": [first, last],
        "periodic": bool, "lat_ascending": bool}`` of the training grid; None (or only
        ``shape``) when unknown, as for CRAI checkpoints: infill then assumes CRAI's
        orientation (latitude south to north, longitude from the first cell east of 0).
    provenance : dict
        Where the weights come from (training run or CRAI file).
    steady_mask : ndarray of bool (H, W) or None
        True at the points that no training field observed (land in an SST field, or
        the ``steady_mask`` given to ``fit``), in the training orientation; ``infill``
        leaves them NaN. None when every point was observed, and for CRAI checkpoints.
    inputs : tuple of str or None
        The input variables, in the order of the network's channels, for a model of
        several (CRAI's ``--data-types``); None for a single-variable model, whose
        one input is ``variable``.
    target : str or None
        The variable the network outputs when it is not the first input (CRAI's
        ``--n-target-data 1``); None when the output is the first input, infilled.
    stats : tuple of (mean, std) pairs, or None
        A several-variable model's normalisation: one pair per input, then the
        target's; None for none (a single-variable model keeps ``mean`` and ``std``).
    bounds : (float or None, float or None) or None
        Bounds the output is kept inside (:mod:`xcrai.bounds`), in the output
        variable's units, None for an open side; None for none.
    sigma_scale : float
        For a model with a σ channel: the factor its σ is multiplied by, which ``fit``
        sets so that σ is calibrated on the validation fields (which it never trained
        on): ``sqrt(mean(error² / σ²))`` at their hidden points; 1 without them.
    first_guess : FirstGuess or None
        The classical first guess the network corrects (``fit(first_guess=...)``,
        :mod:`xcrai.firstguess`): the network reads and writes departures from it, and
        ``mean`` and ``std`` are theirs; None for none.
    """

    architecture: Architecture
    padding: str = "auto"
    time_context: tuple[int, int] | None = (0, 0)
    mean: float | None = None
    std: float | None = None
    variable: str | None = None
    units: str | None = None
    grid: dict[str, Any] | None = None
    provenance: dict[str, Any] = field(default_factory=dict)
    steady_mask: np.ndarray | None = field(default=None, repr=False)
    inputs: tuple[str, ...] | None = None
    target: str | None = None
    stats: tuple[tuple[float, float], ...] | None = None
    bounds: tuple[float | None, float | None] | None = None
    sigma_scale: float = 1.0
    first_guess: FirstGuess | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "bounds", check_bounds(self.bounds))
        if self.inputs is not None:
            object.__setattr__(self, "inputs", tuple(str(v) for v in self.inputs))
            if not self.inputs or len(set(self.inputs)) != len(self.inputs):
                raise ValueError(f"inputs: expected distinct variable names, got {self.inputs}")
        if self.target is not None and self.inputs is None:
            raise ValueError("target: a model with a target variable needs its inputs named")
        if self.target is not None and self.target in (self.inputs or ()):
            raise ValueError(f"target: {self.target!r} is also an input")
        if self.stats is not None:
            pairs = tuple((float(m), float(s)) for m, s in self.stats)
            if len(pairs) != len(self.variables):
                raise ValueError(
                    f"stats: expected one (mean, std) pair per variable {self.variables}, "
                    f"got {len(pairs)}"
                )
            object.__setattr__(self, "stats", pairs)
        if self.steady_mask is not None:
            mask = np.array(self.steady_mask, dtype=bool)  # a copy, then frozen
            if mask.ndim != 2:
                raise ValueError(
                    f"steady_mask: expected a (lat, lon) boolean array, got shape {mask.shape}"
                )
            mask.flags.writeable = False
            object.__setattr__(self, "steady_mask", mask)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ModelConfig):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]  # as before: dict fields are unhashable

    def to_dict(self) -> dict[str, Any]:
        return {
            "architecture": self.architecture.to_dict(),
            "padding": self.padding,
            "time_context": None if self.time_context is None else list(self.time_context),
            "mean": self.mean,
            "std": self.std,
            "variable": self.variable,
            "units": self.units,
            "grid": self.grid,
            "provenance": self.provenance,
            "steady_mask": None if self.steady_mask is None else pack_mask(self.steady_mask),
            "inputs": None if self.inputs is None else list(self.inputs),
            "target": self.target,
            "stats": None if self.stats is None else [list(pair) for pair in self.stats],
            "bounds": None if self.bounds is None else list(self.bounds),
            "sigma_scale": self.sigma_scale,
            **({} if self.first_guess is None else {"first_guess": self.first_guess.to_dict()}),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        tc = d.get("time_context")
        return cls(
            architecture=architecture_from_dict(d["architecture"]),
            padding=d.get("padding", "auto"),
            time_context=None if tc is None else (int(tc[0]), int(tc[1])),
            mean=d.get("mean"),
            std=d.get("std"),
            variable=d.get("variable"),
            units=d.get("units"),
            grid=d.get("grid"),
            provenance=dict(d.get("provenance") or {}),
            steady_mask=None if d.get("steady_mask") is None else unpack_mask(d["steady_mask"]),
            inputs=None if d.get("inputs") is None else tuple(d["inputs"]),
            target=d.get("target"),
            stats=None if d.get("stats") is None else tuple(map(tuple, d["stats"])),
            bounds=None if d.get("bounds") is None else tuple(d["bounds"]),
            sigma_scale=float(d.get("sigma_scale", 1.0)),
            first_guess=(
                None if d.get("first_guess") is None else FirstGuess.from_dict(d["first_guess"])
            ),
        )

    @property
    def variables(self) -> tuple[str | None, ...]:
        """Every variable the model reads or writes: its inputs, then its target."""
        if self.inputs is None:
            return (self.variable,)
        return (*self.inputs, *(() if self.target is None else (self.target,)))

    @property
    def uncertainty(self) -> bool:
        """Whether the network has a σ channel (``fit(..., uncertainty=True)``)."""
        return self.architecture.out_channels > 1

    @property
    def n_inputs(self) -> int:
        """How many input variables the network reads."""
        return 1 if self.inputs is None else len(self.inputs)

    @property
    def output_variable(self) -> str | None:
        """The variable the network outputs: the target, else the (first) input."""
        if self.target is not None:
            return self.target
        return self.inputs[0] if self.inputs is not None else self.variable

    def input_norms(self) -> list[tuple[float, float] | None]:
        """(mean, std) of each input variable, in channel order (None: not normalised)."""
        if self.inputs is None:
            return [None if self.mean is None else (self.mean, self.std or 1.0)]
        if self.stats is None:
            return [None] * len(self.inputs)
        return list(self.stats[: len(self.inputs)])

    def output_norm(self) -> tuple[float, float] | None:
        """(mean, std) that the network's output is un-normalised with (None: none)."""
        if self.inputs is None:
            return None if self.mean is None else (self.mean, self.std or 1.0)
        if self.stats is None:
            return None
        return self.stats[-1] if self.target is not None else self.stats[0]


class CraiModel:
    """A partial-convolution U-Net with its configuration.

    Obtain one with :func:`xcrai.load_model` (a CRAI checkpoint or xcrai's own
    file) or from training; :meth:`save` writes xcrai's own format, which
    :func:`xcrai.load_model` reads back exactly.

    Parameters
    ----------
    config : ModelConfig
    state_dict : dict, optional
        Weights; freshly initialised when omitted.
    sha256 : str, optional
        Hash of the file the model was read from.
    """

    def __init__(
        self,
        config: ModelConfig,
        state_dict: dict[str, torch.Tensor] | None = None,
        *,
        sha256: str | None = None,
    ) -> None:
        self.config = config
        if state_dict is None:
            self.net = build_network(config.architecture)
        else:
            with torch.random.fork_rng(devices=[]):  # initial weights drawn only to be replaced
                self.net = build_network(config.architecture)
            self.net.load_state_dict(state_dict, strict=True)
        self.net.eval()
        self._sha256 = sha256
        #: the sha256 of the file :meth:`save` last wrote (the card names it)
        self._saved_sha256: str | None = None
        self._replicas: dict[str, torch.nn.Module] = {}
        self._lock = threading.Lock()

    # pickling (dask sends models to workers): no locks or device replicas
    def __getstate__(self) -> dict[str, Any]:
        return {"config": self.config, "state_dict": self.net.state_dict(), "sha256": self.sha256}

    def __setstate__(self, state: dict[str, Any]) -> None:
        CraiModel.__init__(self, state["config"], state["state_dict"], sha256=state["sha256"])

    def __dask_tokenize__(self) -> tuple[str, str, str]:
        steady = self.config.steady_mask
        packed = "" if steady is None else pack_mask(steady)["bits"]  # not in the repr
        return ("xcrai.CraiModel", self.sha256, repr(self.config) + packed)

    @property
    def sha256(self) -> str:
        """sha256 of the file this model came from, or of its weights if unsaved."""
        if self._sha256 is None:
            buffer = io.BytesIO()
            torch.save(self.net.state_dict(), buffer)
            return hashlib.sha256(buffer.getvalue()).hexdigest()
        return self._sha256

    @property
    def name(self) -> str:
        """File name (or a short description) used in history lines."""
        return str(self.config.provenance.get("file", "unsaved model"))

    @property
    def history(self) -> Any:
        """Loss history of training (train and validation losses per logging step) as an
        xarray Dataset indexed by iteration; None for models not trained by xcrai."""
        rows = self.config.provenance.get("history")
        if not rows:
            return None
        import pandas as pd
        import xarray as xr

        frame = pd.DataFrame(rows).set_index("iteration")
        frame.index = frame.index.astype(int)
        return xr.Dataset.from_dataframe(frame)

    @property
    def in_channels(self) -> int:
        return self.config.architecture.in_channels

    @property
    def window(self) -> int:
        """Time steps the network reads of each input variable: P + F + 1."""
        return self.in_channels // self.config.n_inputs

    def with_options(
        self,
        *,
        padding: str | None = None,
        time_context: tuple[int, int] | None = None,
        bounds: tuple[float | None, float | None] | None = None,
    ) -> CraiModel:
        """A model sharing these weights with another padding, time context or output
        bounds (``(None, None)``: none)."""
        changes: dict[str, Any] = {}
        if bounds is not None:
            changes["bounds"] = check_bounds(bounds)
        if padding is not None:
            changes["padding"] = check_padding(padding)
        if time_context is not None:
            changes["time_context"] = check_time_context(time_context, self.window)
            steps = getattr(self.config.architecture, "steps", None)
            if steps is not None and steps != changes["time_context"]:
                raise ValueError(
                    f"time_context: {self.name} was loaded with time_context={steps}, which "
                    "its network is built for; load it again with "
                    f"time_context={changes['time_context']}"
                )
        if not changes:
            return self
        other = CraiModel.__new__(CraiModel)
        other.config = replace(self.config, **changes)
        other.net = self.net
        other._sha256 = self._sha256
        other._replicas = self._replicas
        other._lock = self._lock
        return other

    def replica(self, device: torch.device, compiled: bool = False) -> torch.nn.Module:
        """An inference copy of the network on ``device``, channels-last, in eval mode.

        Made once per device and reused; channels-last is 1.5-2x faster for these
        convolutions on CPUs (oneDNN) and GPUs (cuDNN). ``compiled=True`` wraps it in
        ``torch.compile`` (once per device; the kernels are built at the first call).
        """
        key = str(device)
        with self._lock:
            if key not in self._replicas:
                net = copy.deepcopy(self.net).to(device, memory_format=torch.channels_last)  # type: ignore[call-overload]
                for p in net.parameters():
                    p.requires_grad_(False)
                self._replicas[key] = net.eval()
            if compiled and f"{key} compiled" not in self._replicas:
                compiled_net = torch.compile(self._replicas[key])
                self._replicas[f"{key} compiled"] = cast(torch.nn.Module, compiled_net)
            return self._replicas[f"{key} compiled" if compiled else key]

    def save(self, path: str | Path) -> Path:
        """Write xcrai's own checkpoint (weights and configuration), atomically.

        Examples
        --------
        >>> model.save("tas_model.pth")  # doctest: +SKIP
        >>> xcrai.load_model("tas_model.pth")  # doctest: +SKIP
        """
        return save_model(self, path)

    def __repr__(self) -> str:
        """Several lines, one a subject: the network, how it reads the data, its skill."""
        arch, config = self.config.architecture, self.config
        channels = [layer.out_channels for layer in arch.encoder]
        kernels = [layer.kernel_size for layer in arch.encoder]
        lines = [
            f"encoder channels={channels}, kernels={kernels}, in_channels={arch.in_channels}, "
            f"normalization={arch.normalization!r}",
            f"padding={config.padding!r}, time_context={config.time_context}",
            f"variable={config.variable!r}, units={config.units!r}, mean={config.mean}, "
            f"std={config.std}",
        ]
        if config.inputs is not None:
            lines.append(f"inputs={list(config.inputs)}, target={config.target!r}")
        if config.bounds is not None:
            lines.append(f"bounds={config.bounds}")
        if self.standing is not None:
            lines.append(summary(self.standing))
        body = "".join(f"\n    {line}," for line in lines)
        return f"CraiModel({self.name!r},{body}\n)"

    @property
    def standing(self) -> dict[str, Any] | None:
        """The table ``fit`` stored of hole RMSEs on its validation fields: the model's and
        the classical fills' (:mod:`xcrai.skill`); None for other models, and for a fit
        without validation fields."""
        table = self.config.provenance.get(PROVENANCE_KEY)
        return table if isinstance(table, dict) else None

    @property
    def card(self) -> str:
        """The model card as text, one ``label: text`` per line (``xcrai models FILE``):
        what the model is, was trained on, and how well it did, against classical fills
        too where ``fit`` scored them."""
        return f"CraiModel {self.name!r}\n" + "\n".join(
            f"{label:>18}: {text}" for label, text in self._card_rows()
        )

    def _card_rows(self) -> list[tuple[str, str]]:
        """(label, text) rows describing the model, for :meth:`_repr_html_`."""
        from xcrai.zoo import REGISTRY

        config, prov = self.config, self.config.provenance
        arch = config.architecture
        sha = self._sha256 or self._saved_sha256 or prov.get("sha256")
        card = REGISTRY.find_sha256(sha) if isinstance(sha, str) else None
        grid = config.grid or {}
        grid_text = "x".join(str(n) for n in grid.get("shape", [])) or "not recorded"
        if "lat" in grid and "lon" in grid:
            grid_text += f", lat {grid['lat']}, lon {grid['lon']}"
        if "periodic" in grid:
            grid_text += ", periodic in longitude" if grid["periodic"] else ", regional"
        if card is not None and (card.training_data or card.period):
            training = (
                f"{card.training_data or 'not recorded'}; period {card.period or 'not recorded'}"
            )
        elif prov.get("source") == "xcrai fit":
            shape = zip(prov.get("data_dims", []), prov.get("data_shape", []), strict=False)
            dims = ", ".join(f"{d}: {n}" for d, n in shape)
            training = f"xcrai fit on ({dims}), {prov.get('iterations')} iterations"
        else:
            training = "not recorded"
        if config.inputs is not None:
            names = [str(v) for v in config.variables]
            normalisation = (
                "none" if config.stats is None
                else "; ".join(f"{v}: (x - {m:g}) / {s:g}"
                               for v, (m, s) in zip(names, config.stats, strict=True))
            )  # fmt: skip
        elif config.mean is None or config.std is None:
            normalisation = "none"
        else:
            normalisation = f"(x - {config.mean:g}) / {config.std:g}"
        guess = [] if config.first_guess is None else [
            ("first guess", f"{config.first_guess.describe()}, which the network corrects")
        ]  # fmt: skip
        if config.first_guess is not None and config.mean is not None:
            normalisation = normalisation.replace("(x - ", "(x - first guess - ", 1)
        skill = "not measured"
        history = prov.get("history") or []
        if history and "val_loss" in history[-1]:
            last = history[-1]
            iteration = last.get("iteration")
            if isinstance(iteration, float) and iteration.is_integer():
                iteration = int(iteration)  # a history row's numbers are floats
            skill = f"iteration {iteration}: validation loss {last['val_loss']:.4g}"
            if "val_hole_rmse" in last:
                skill += f", hole RMSE {last['val_hole_rmse']:.4g} {config.units or ''}".rstrip()
        elif card is not None and card.skill is not None:
            skill = str(card.skill)
        source = ", ".join(
            f"{key} {prov[key]}"
            for key in ("source", "file", "xcrai_version", "seed")
            if key in prov
        )
        standing = [] if self.standing is None else [
            ("validation skill", f"{summary(self.standing)} ({describe_skill(self.standing)})")
        ]  # fmt: skip
        extras = network(arch).extras(arch)
        return [
            ("architecture", f"partial-convolution U-Net{extras}, encoder channels "
             f"{[layer.out_channels for layer in arch.encoder]}, kernels "
             f"{[layer.kernel_size for layer in arch.encoder]}, {arch.in_channels} input "
             f"channel(s), normalization {arch.normalization}"),
            ("training data", training),
            ("variable", f"{config.variable or 'not recorded'}" + (
                "" if config.inputs is None else
                f" ({'predicted' if config.target else 'infilled'} from "
                f"{', '.join(config.inputs)})"
            ) + ("" if config.bounds is None else
                 f", output bounds {describe_bounds(config.bounds)}")),
            ("units", f"{config.units or 'not recorded'}"),
            ("grid", grid_text),
            ("padding", config.padding),
            ("time context", "not recorded" if config.time_context is None
             else f"{config.time_context[0]} past, {config.time_context[1]} future"),
            ("normalisation", normalisation),
            *guess,
            ("provenance", f"{source or 'not recorded'}; " + (
                f"sha256 {sha[:12]}" if isinstance(sha, str) else
                f"not saved (sha256 of its weights {self.sha256[:12]})")),
            ("skill", skill),
            *standing,
        ]  # fmt: skip

    def _repr_html_(self) -> str:
        """A compact table for Jupyter: what the model is, was trained on, and how well it did."""
        rows = "".join(
            f"<tr><th style='text-align:left;padding-right:1em'>{html.escape(label)}</th>"
            f"<td style='text-align:left'>{html.escape(text)}</td></tr>"
            for label, text in self._card_rows()
        )
        title = html.escape(f"CraiModel {self.name!r}")
        return f"<table><caption style='text-align:left'><b>{title}</b></caption>{rows}</table>"


@dataclass(frozen=True)
class Ensemble:
    """Several models of one variable, whose infills become the members of a ``member``
    dimension: every label of a multi-label CRAI checkpoint (``load_model(path,
    label="all")``), or a list of models given to ``infill``.

    Attributes
    ----------
    members : tuple of CraiModel
    labels : tuple of str
        One distinct name per member (CRAI's labels, or the models' file names); the
        ``member_label`` coordinate of the result.

    Examples
    --------
    >>> ensemble = xcrai.load_model("multi.pth", label="all")  # doctest: +SKIP
    >>> filled = ds.tas.crai.infill(ensemble)  # doctest: +SKIP
    >>> filled.mean("member"), filled.std("member")  # doctest: +SKIP
    """

    members: tuple[CraiModel, ...]
    labels: tuple[str, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "members", tuple(self.members))
        object.__setattr__(self, "labels", tuple(str(label) for label in self.labels))
        if not self.members or len(self.labels) != len(self.members):
            raise ValueError(
                f"model: expected one label per member (at least one), got "
                f"{len(self.members)} member(s) and {len(self.labels)} label(s)"
            )
        if len(set(self.labels)) != len(self.labels):
            raise ValueError(f"model: the members' labels must differ, got {list(self.labels)}")
        reads = {(m.config.variables, m.config.output_variable) for m in self.members}
        if len(reads) > 1:
            raise ValueError(
                "model: the members read or write different variables "
                f"({sorted(map(str, reads))}); an ensemble infills one variable"
            )

    def __len__(self) -> int:
        return len(self.members)

    def __iter__(self) -> Iterator[CraiModel]:
        return iter(self.members)

    def __getitem__(self, index: int) -> CraiModel:
        return self.members[index]

    def __repr__(self) -> str:
        return f"Ensemble({len(self)} members: {list(self.labels)})"

    @property
    def card(self) -> str:
        """Every member's card (:attr:`CraiModel.card`), under its label."""
        return "\n\n".join(
            f"member {label}: {m.card}" for label, m in zip(self.labels, self.members, strict=True)
        )

    def _repr_html_(self) -> str:
        """For Jupyter: what the members share (the first member's card) and, per member,
        its label, file and provenance."""
        first = dict(self.members[0]._card_rows())
        shared = "".join(
            f"<tr><th style='text-align:left;padding-right:1em'>{html.escape(key)}</th>"
            f"<td style='text-align:left'>{html.escape(first[key])}</td></tr>"
            for key in ("architecture", "variable", "units", "grid", "padding")
        )
        rows = "".join(
            f"<tr><th style='text-align:left;padding-right:1em'>member {html.escape(label)}</th>"
            f"<td style='text-align:left'>{html.escape(dict(m._card_rows())['provenance'])}"
            f"{', with sigma' if m.config.uncertainty else ''}"
            f"{'' if m.standing is None else html.escape('; ' + summary(m.standing))}</td></tr>"
            for label, m in zip(self.labels, self.members, strict=True)
        )
        title = html.escape(f"Ensemble of {len(self)} models")
        caption = f"<caption style='text-align:left'><b>{title}</b></caption>"
        return f"<table>{caption}{shared}{rows}</table>"

    def save(self, path: str | Path) -> Path:
        """Write every member in one xcrai model file, atomically; read it back with
        ``xcrai.load_model(path, label="all")`` (``infill`` does that with the path)."""
        return save_model(self, path)


def save_model(
    model: CraiModel | Ensemble,
    path: str | os.PathLike[str],
    argument: str = "path",
    *,
    overwrite: bool = True,
) -> Path:
    """Write ``model`` (or every member of an Ensemble, in one file) in xcrai's format to
    ``path`` atomically (temp file, rename).

    A failed write (full disk, file size limit) raises :class:`xcrai.files.WriteError`
    naming ``argument``, and leaves no file behind. Without ``overwrite``, a file at
    ``path`` when the write ends (one another program wrote meanwhile) is left as it is
    and :class:`xcrai.files.OutputAppeared` names where the model went instead.
    """
    if isinstance(model, Ensemble):
        members = [_native_payload(m) for m in model.members]
        payload = {FORMAT_KEY: FORMAT_VERSION,
                   ENSEMBLE_KEY: {"labels": list(model.labels), "members": members}}  # fmt: skip
        return write_torch(payload, Path(path), argument, overwrite=overwrite)
    payload = {FORMAT_KEY: FORMAT_VERSION, **_native_payload(model)}
    written = write_torch(payload, Path(path), argument, overwrite=overwrite)
    model._saved_sha256 = file_sha256(written)
    return written


def _native_payload(model: CraiModel) -> dict[str, Any]:
    """A model's configuration (provenance stamped with this xcrai's version) and weights."""
    provenance = {**model.config.provenance, "xcrai_version": __version__}
    config = model.config.to_dict()
    config["provenance"] = provenance
    return {"config": config, "state_dict": model.net.state_dict()}
