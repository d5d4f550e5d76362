"""The ``xcrai`` command line: a thin layer over the Python API."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import warnings
from collections.abc import Hashable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from xcrai.streaming import DEFAULT_BUDGET, memory_budget, parse_size

if TYPE_CHECKING:
    from xcrai.options import InfillOptions

#: bytes of input per dask chunk when streaming a file
CHUNK_BYTES = 8 * 2**20
#: exit statuses after Ctrl-C and SIGTERM (128 + the signal's number, as shells report)
EXIT_INTERRUPTED, EXIT_TERMINATED = 130, 143


#: the options ``xcrai fit`` builds ``architecture`` from (xcrai.options.DEFAULT_ARCHITECTURE)
ARCHITECTURE_OPTIONS = ("n_filters", "depth", "normalization")
#: options of each command that the Python API does not have, by ``dest``: files, and how
#: the command reads and writes them. ``tests/test_options.py`` holds the API and the
#: command line to these lists, and to the same defaults everywhere else.
CLI_ONLY: dict[str, tuple[str, ...]] = {
    "infill": (
        "input",
        "group",
        "output",
        # how a CRAI checkpoint is read: xcrai.load_model's arguments in the Python API
        "label",
        "inputs",
        "target",
        "mask_var",
        "steady_mask_var",
        "time_chunk",
        "memory",
        "overwrite",
    ),
    "fit": (
        "data",
        "group",
        "var",
        "mask_var",
        "steady_mask_var",
        "output",
        "overwrite",
        *ARCHITECTURE_OPTIONS,
    ),
}
#: arguments of the Python API that the command line spells otherwise: ``architecture``
#: is ``--n-filters``, ``--depth`` and ``--normalization``
API_ONLY: dict[str, tuple[str, ...]] = {"infill": (), "fit": ("architecture",)}


def parse_validation(text: str) -> float | Path:
    """``--validation``: a fraction of the time axis, or a netCDF file of fields."""
    try:
        return float(text)
    except ValueError:
        return Path(text)


def parse_names(text: str) -> tuple[str, ...]:
    """``--inputs``: comma-separated variable names (checked where the file is read)."""
    return tuple(name.strip() for name in text.split(","))


def add_options(parser: argparse.ArgumentParser, options: type) -> None:
    """Add an option to ``parser`` for each field of the dataclass ``options``.

    The field's default, help text, choices, parser (text -> value) and name come from the
    field (see :func:`xcrai.options.meta`); ``dest`` is the field's name. Booleans are
    switches: ``--name`` when off by default, ``--name/--no-name`` when on.

    Examples
    --------
    >>> from xcrai.options import InfillOptions
    >>> parser = argparse.ArgumentParser()
    >>> add_options(parser, InfillOptions)
    >>> parser.parse_args(["--batch-size", "8"]).batch_size
    8
    """
    for option in fields(options):
        meta = option.metadata
        if not meta["cli"]:
            continue
        flag = meta["flag"] or "--" + option.name.replace("_", "-")
        text = meta["help"].replace("%", "%%")
        if isinstance(option.default, bool):
            action = argparse.BooleanOptionalAction if option.default else "store_true"
            text += f" (default: {'on' if option.default else 'off'})"
            parser.add_argument(flag, dest=option.name, default=option.default, action=action,
                                help=text)  # fmt: skip
            continue
        shown = meta["default_text"] or _show(option.default)
        extra = {key: meta[key] for key in ("choices", "metavar") if meta[key] is not None}
        parser.add_argument(
            flag, dest=option.name, default=option.default, type=meta["parse"],
            help=f"{text} (default: {shown})", **extra,
        )  # fmt: skip


def _show(value: Any) -> str:
    if value is None:
        return "none"
    return ",".join(map(str, value)) if isinstance(value, tuple) else str(value)


def options_from(options: type, args: argparse.Namespace, **given: Any) -> Any:
    """The options object of a command from its parsed arguments (and ``given`` values for
    fields the command line spells otherwise)."""
    values = {f.name: getattr(args, f.name) for f in fields(options) if f.metadata["cli"]}
    return options(**values, **given)


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors in one line (``xcrai infill: error: argument ...``), as
    every other error of the command line."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    from xcrai.options import (
        ARCHITECTURE_CHOICES,
        DEFAULT_ARCHITECTURE,
        FitOptions,
        InfillOptions,
        parse_positive,
    )

    parser = _Parser(
        prog="xcrai",
        description="Infill gaps in gridded climate data with CRAI's partial-convolution U-Net.",
    )
    parser.add_argument("--version", action="version", version=_version())
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    infill = commands.add_parser(
        "infill",
        help="infill a netCDF file with a model",
        description="Infill the holes (NaNs) of a netCDF file and write a new file. The input is "
        "streamed in time chunks through dask, so memory does not grow with the number of time "
        "steps. The output is written to a temporary file beside OUTPUT and renamed when "
        "complete; the input is never modified.",
    )
    infill.add_argument("input", type=Path, help="netCDF file with holes as NaN / _FillValue")
    infill.add_argument(
        "-m", "--model", required=True, action="append",
        help="CRAI checkpoint, xcrai model file, or registered name (see `xcrai models`); "
        "repeat it for an ensemble, whose members become a member dimension",
    )  # fmt: skip
    infill.add_argument(
        "--label", default=None, metavar="LABEL",
        help="which label of a CRAI checkpoint to load (default: the last), or all: every "
        "label, as members of an ensemble",
    )  # fmt: skip
    infill.add_argument(
        "--inputs", type=parse_names, default=None, metavar="A,B,...",
        help="a CRAI checkpoint's input variables, in the order of its --data-types "
        "(default: one variable)",
    )  # fmt: skip
    infill.add_argument(
        "--target", default=None, metavar="NAME",
        help="a CRAI checkpoint's target variable (its --n-target-data 1), predicted from "
        "--inputs",
    )  # fmt: skip
    _add_group(infill, "INPUT")
    infill.add_argument("-o", "--output", required=True, type=Path, help="netCDF file to write")
    infill.add_argument(
        "--var", action="append", dest="variables", metavar="NAME",
        help="variable to infill (repeatable); default: every variable with lat/lon dimensions",
    )  # fmt: skip
    infill.add_argument(
        "--mask", type=Path, default=None, metavar="FILE",
        help="netCDF file of validity masks (1 valid, 0 missing), broadcast against each "
        "variable as the Python mask= argument: e.g. (lat, lon) for every step, or the "
        "data's own dims (default: the non-NaN points)",
    )  # fmt: skip
    infill.add_argument(
        "--mask-var", default=None, metavar="NAME",
        help="variable of the --mask file (default: its only data variable)",
    )  # fmt: skip
    _add_steady_mask(infill, "replaces the model's own")
    add_options(infill, InfillOptions)
    infill.add_argument(
        "--time-chunk", type=parse_positive, default=None, metavar="N",
        help=f"time steps read per chunk (default: about {CHUNK_BYTES // 2**20} MiB of input)",
    )  # fmt: skip
    infill.add_argument(
        "--memory", default=DEFAULT_BUDGET, metavar="SIZE",
        help="memory for the chunks in flight, e.g. 2GB: it sets how many dask threads read, "
        f"infill and write at once (default {DEFAULT_BUDGET}; libraries, model and one batch "
        "come on top)",
    )  # fmt: skip
    infill.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it exists")

    fit = commands.add_parser(
        "fit",
        help="train a model on complete fields and coverage masks",
        description="Train a partial-convolution U-Net on complete fields (DATA) with coverage "
        "patterns (MASKS) and save it as an xcrai model file, which `xcrai infill` and "
        "`.crai.infill` use without further options.",
    )
    fit.add_argument("data", type=Path, help="netCDF file with complete training fields")
    _add_group(fit, "DATA")
    fit.add_argument(
        "--var", default=None,
        help="variable of DATA, for a model of one (default: the only gridded one)",
    )  # fmt: skip
    fit.add_argument(
        "--inputs", type=parse_names, default=None, metavar="NAME,...",
        help="variables of DATA the network reads, in channel order, for a model of several "
        "(instead of --var); each gets coverage patterns of its own: the MASKS variable of "
        "its name, else --mask-var or the only one, for every input",
    )  # fmt: skip
    fit.add_argument(
        "--target", default=None, metavar="NAME",
        help="the variable the model outputs: another variable of DATA, predicted from the "
        "inputs, or an input, infilled (default: the first input, infilled)",
    )  # fmt: skip
    fit.add_argument(
        "--masks",
        required=True,
        type=Path,
        help="netCDF file of coverage patterns (1/0, bool, or NaN = missing)",
    )
    fit.add_argument("--mask-var", default=None, help="variable of MASKS (default: as --var)")
    _add_steady_mask(fit, "added to the points NaN in every field; stored in the model")
    fit.add_argument("-o", "--output", required=True, type=Path, help="model file to write")
    fit.add_argument(
        "--validation", type=parse_validation, default=0.1, metavar="FRACTION|FILE",
        help="fraction of the time axis (its end) held out, 0 for none, or a netCDF file of "
        "validation fields (variable as --var) (default: 0.1)",
    )  # fmt: skip
    add_options(fit, FitOptions)
    fit.add_argument(
        "--n-filters", type=parse_positive, default=DEFAULT_ARCHITECTURE["n_filters"],
        metavar="N", help="channels of the first layer (then 2N, 4N, 8N, 8N, ...) "
        f"(default: {DEFAULT_ARCHITECTURE['n_filters']})",
    )  # fmt: skip
    fit.add_argument(
        "--depth", type=parse_positive, default=DEFAULT_ARCHITECTURE["depth"], metavar="N",
        help=f"encoder layers (default: {DEFAULT_ARCHITECTURE['depth']})",
    )  # fmt: skip
    fit.add_argument(
        "--normalization", choices=ARCHITECTURE_CHOICES["normalization"],
        default=DEFAULT_ARCHITECTURE["normalization"],
        help="partial-convolution scaling: crai divides by the count of valid inputs, window "
        "scales by window size over that count (Liu et al. 2018) "
        f"(default: {DEFAULT_ARCHITECTURE['normalization']})",
    )  # fmt: skip
    fit.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it exists")

    models = commands.add_parser(
        "models",
        help="list the registered models, or show one model's card",
        description="List the models that -m/--model and xcrai.load_model accept by name, "
        "or show the card of model NAME (variable, units, grid, training data, licence, "
        "citation, sha256, skill), or of the model file FILE (with the hole RMSEs of the "
        "model and of classical fills on fit's validation fields). Nothing is downloaded.",
    )
    models.add_argument(
        "name", nargs="?", metavar="NAME|FILE", help="show this model's (or file's) card"
    )

    demo = commands.add_parser(
        "demo",
        help="infill the bundled HadCRUT4 sample with CRAI's demo model",
        description="Infill the bundled HadCRUT4 sample (1877-09 and 1893-08, 72x72) with the "
        "bundled CRAI demo model (20crtasgn72, global padding) and write "
        "DIR/hadcrut4_infilled.nc and DIR/hadcrut4_infilled.png.",
    )
    demo.add_argument(
        "-o",
        "--output-dir",
        type=Path,
        default=Path("."),
        metavar="DIR",
        help="folder for the outputs (default: the current folder)",
    )
    demo.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda:N")
    return parser


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"xcrai {version('xcrai')}"
    except PackageNotFoundError:  # pragma: no cover - source tree not installed
        return "xcrai (version unknown)"


def _add_group(parser: argparse.ArgumentParser, file: str) -> None:
    """``--group NAME``: the netCDF group of the command's data file."""
    parser.add_argument(
        "--group", default=None, metavar="NAME",
        help=f"netCDF group of {file} that holds the variables, e.g. obs or obs/monthly "
        "(default: the file's root)",
    )  # fmt: skip


def _add_steady_mask(parser: argparse.ArgumentParser, effect: str) -> None:
    """``--steady-mask FILE`` and ``--steady-mask-var NAME`` of ``infill`` and ``fit``."""
    parser.add_argument(
        "--steady-mask", type=Path, default=None, metavar="FILE",
        help="netCDF file of a (lat, lon) mask on the data's grid, 1 where a point is never "
        f"valid (e.g. land), as the Python steady_mask= argument: {effect}",
    )  # fmt: skip
    parser.add_argument(
        "--steady-mask-var", default=None, metavar="NAME",
        help="variable of the --steady-mask file (default: its only data variable)",
    )  # fmt: skip


def infill_file(
    input: Path,
    model: Any,
    output: Path,
    options: InfillOptions | None = None,
    *,
    variables: Sequence[str] | None = None,
    mask: Path | None = None,
    mask_var: str | None = None,
    steady_mask: Path | None = None,
    steady_mask_var: str | None = None,
    time_chunk: int | None = None,
    memory: str | int = DEFAULT_BUDGET,
    overwrite: bool = False,
    label: str | None = None,
    inputs: Sequence[str] | None = None,
    target: str | None = None,
    group: str | None = None,
) -> Path:
    """Infill a netCDF file into another, streaming through dask (the ``xcrai infill`` command).

    With ``flags``, each infilled variable ``<var>`` gets a CF flag variable ``<var>_flag``
    (1 observed, 0 infilled, -1 hole beyond the network's reach) named in its
    ``ancillary_variables``. Holes beyond the network's reach and fields without any
    valid point are counted by the same computation that writes the file, and reported
    in one line on stderr after the progress bar.

    Everything that would stop the write is checked before any work: the output is not
    an input (nor a link to one), not a folder, not a ``.zarr`` name, not an existing file
    without ``overwrite``, and its folder is writable. The output is written to a
    temporary file beside it and renamed when complete; a failed write (full disk, file
    size limit) raises :class:`xcrai.files.WriteError` and leaves no file.

    Parameters
    ----------
    input, output : path
        The netCDF files read and written.
    model : str, path, CraiModel, Ensemble, or a list of these
        A model file, a registered name, or a loaded model; several (or ``label="all"``)
        give the result a ``member`` dimension.
    options : InfillOptions, optional
        How to infill; with ``return_output``, each variable's flag ``<name>_flag`` is
        written beside it.
    variables : list of str, optional
        Default: every variable with latitude and longitude dimensions.
    mask : path, optional
        A netCDF file whose variable ``mask_var`` (default: its only data variable) is the
        ``mask=`` of :meth:`xcrai.accessor.CraiDatasetAccessor.infill`.
    steady_mask : path, optional
        A netCDF file whose variable ``steady_mask_var`` (default: its only data variable)
        is the ``steady_mask=`` of :meth:`xcrai.accessor.CraiDatasetAccessor.infill`.
    time_chunk : int, optional
        Time steps read per dask chunk; default about ``CHUNK_BYTES`` of input.
    memory : str or int
        Memory budget of the chunks in flight (:func:`xcrai.streaming.memory_budget`).
    overwrite, progress : bool
        Replace an existing output; show a progress bar.
    label, inputs, target
        How a CRAI checkpoint is read: as :func:`xcrai.load_model` takes them.
    group : str, optional
        The netCDF group of ``input`` holding the variables (default: its root); the
        output holds them at its root.

    Returns
    -------
    Path
        ``output``.

    Examples
    --------
    >>> infill_file("in.nc", "20crtasgn72", "out.nc", InfillOptions(device="cpu"))  # doctest: +SKIP
    """
    import xcrai.accessor  # noqa: F401  (registers .crai)
    from xcrai.files import atomic_path, refuse_overwriting_inputs
    from xcrai.options import InfillOptions

    options = options or InfillOptions()
    input, output = Path(input), Path(output)
    for name, path in (("input", input), ("mask", mask), ("steady_mask", steady_mask)):
        if path is not None and not Path(path).is_file():
            raise FileNotFoundError(f"{name}: no file at {str(path)!r}")
    models = list(model) if isinstance(model, (list, tuple)) else [model]
    files = [m for m in models if isinstance(m, (str, os.PathLike)) and Path(m).is_file()]
    refuse_overwriting_inputs(output, {
        "input": input, "mask": mask, "steady_mask": steady_mask,
        **{("model" if len(files) == 1 else f"model {i + 1}"): m for i, m in enumerate(files)},
    })  # fmt: skip
    if output.suffix.lower() == ".zarr":
        raise ValueError(
            f"output: {str(output)!r} names a zarr store, but xcrai infill writes netCDF; "
            "name a .nc file, or write zarr from Python with the result's .to_zarr(...), "
            "e.g. ds.crai.infill(model).to_zarr(store)"
        )
    _check_output(output, overwrite)
    parse_size(memory)  # a bad --memory fails now, not after the model is read
    from xcrai.checkpoint import load_any  # torch: after every refusal that needs none
    from xcrai.infill import infill_variables
    from xcrai.model import CraiModel, Ensemble
    from xcrai.observer import BlockObserver

    variables = list(dict.fromkeys(variables)) if variables else None  # --var a --var a
    loaded = [
        m if isinstance(m, (CraiModel, Ensemble))
        else load_any(m, label=label, inputs=None if inputs is None else list(inputs),
                      target=target, time_context=options.time_context)
        for m in models
    ]  # fmt: skip
    if len(loaded) == 1:
        model_obj: Any = loaded[0]
    elif any(isinstance(m, Ensemble) for m in loaded):
        raise ValueError(
            "model: an ensemble file (or --label all) is a whole ensemble and takes no other "
            "--model; give its file alone, or each model on its own --model"
        )
    else:
        model_obj = loaded
    with _open_netcdf(input, "input", group=group, chunks={}) as probe:
        chunks = _chunks(probe, variables, time_chunk)
    steady = None if steady_mask is None else read_steady_mask(Path(steady_mask), steady_mask_var)
    masks, mask_da = (None, None) if mask is None else _read_mask(Path(mask), mask_var)
    ds = _open_netcdf(input, "input", group=group, chunks=chunks)
    try:
        # --flags writes the flags only: the raw output would double the file
        flags = options.return_output
        observer = BlockObserver(tally=True)
        result, infilled = infill_variables(
            ds, model_obj, replace(options, return_output=False), variables=variables,
            mask=mask_da, steady_mask=steady, flags=flags, observer=observer,
        )  # fmt: skip
        # members count a field each; a target the file lacks is predicted everywhere (a
        # reduction of the result would run the network twice: dask optimises it apart)
        counts: dict[str, Any] = {
            "fields": {
                name: r.data.size // (r.data.sizes[r.spatial[0]] * r.data.sizes[r.spatial[1]])
                for name, r in infilled.items()
            },
            "holes": {  # the points to infill: from the data, --mask and --steady-mask
                name: 1.0 if r.holes is None else r.holes.data.mean()
                for name, r in infilled.items()
            },
        }
        sources = [ds[name] for name in model_inputs(model_obj, [str(name) for name in infilled])]
        with atomic_path(output, overwrite=overwrite, argument="output") as tmp:
            label = input.name if options.progress else None
            with memory_budget(memory, *sources):
                counts = _write_infilled(result, counts, observer, tmp, output, label)
    finally:
        ds.close()
        if masks is not None:
            masks.close()
    averaged = len(model_obj.members if hasattr(model_obj, "members") else loaded)
    _report_unreached({name: tuple(counts["unreached"].get(name, (0, 0))) for name in infilled},
                      flags, averaged if options.members == "mean" else 1,
                      options.unreachable)  # fmt: skip
    return output


def model_inputs(model: Any, infilled: list[str]) -> list[str]:
    """The variables of the file that ``infilled`` are read from: a several-variable
    model's inputs, else themselves."""
    first = model[0] if isinstance(model, list) else model
    first = first.members[0] if hasattr(first, "members") else first
    return list(first.config.inputs or infilled)


def _report_unreached(
    counts: dict, flags: bool, averaged: int = 1, unreachable: str = "crai"
) -> None:
    """One line on stderr for the holes the network did not reach, once the file is
    written (not into the progress bar), pointing at ``--flags`` where it was not given.
    The blocks count them in each member, so for the mean of ``averaged`` members the
    line says so (the written flags mark a point once)."""
    from xcrai.infill import flagged_names, unreached_message

    message = unreached_message(counts, unreachable)
    if message and averaged > 1:
        message += f" (counted in each of the {averaged} members averaged)"
    if message:
        names = flagged_names(counts)
        hint = f"flagged -1 in {names}" if flags else f"pass --flags for {names} (-1 there)"
        print(f"xcrai infill: warning: {message}; {hint}", file=sys.stderr)


def _fields(options: Any) -> dict[str, Any]:
    """An options dataclass as keyword arguments."""
    return {f.name: getattr(options, f.name) for f in fields(options)}


def _read_mask(path: Path, name: str | None) -> tuple[Any, Any]:
    """The ``--mask`` file, open and lazy, and its variable ``--mask-var`` (default: its only
    data variable)."""
    masks = _open_netcdf(path, "mask", chunks={})
    try:
        name = name or _only([str(v) for v in masks.data_vars], "mask-var", path)
        if name not in masks.data_vars:
            raise ValueError(f"mask-var: {name!r} not in {path}; it has {list(masks.data_vars)}")
    except ValueError:
        masks.close()
        raise
    return masks, masks[name]


def read_steady_mask(path: Path, name: str | None) -> Any:
    """The ``--steady-mask`` file's variable ``--steady-mask-var`` (default: its only data
    variable), loaded (a (lat, lon) mask is small) and the file closed."""
    with _open_netcdf(path, "steady-mask") as file:
        name = name or _only([str(v) for v in file.data_vars], "steady-mask-var", path)
        if name not in file.data_vars:
            raise ValueError(
                f"steady-mask-var: {name!r} not in {path}; it has {list(file.data_vars)}"
            )
        return file[name].load()


def _check_output(output: Path, overwrite: bool) -> None:
    """Refuse an output that could not or should not be written, before any work. The
    write itself checks again at its end (an output may appear while the work runs)."""
    from xcrai.files import check_writable

    if str(output) == "-":
        raise ValueError(
            "output: '-' would be a file named '-': xcrai writes files, not standard output "
            "(netCDF and model files need a seekable file); name a file, e.g. -o out.nc"
        )
    check_writable(output, "output")
    if output.exists() and not overwrite:
        raise FileExistsError(f"output: {str(output)!r} exists; pass --overwrite to replace it")


def _open_netcdf(path: Path, argument: str, group: str | None = None, **kwargs: Any) -> Any:
    """``xr.open_dataset(path, group=group)``, with an error that names the file when it is
    not netCDF, may be incomplete or locked, or keeps its variables in groups (named, with
    ``--group`` advice where the file takes one)."""
    import xarray as xr

    from xcrai.files import first_line

    option = "--group" if argument in ("input", "data") else None
    try:
        ds = xr.open_dataset(path, group=group, **kwargs)
    except (ValueError, OSError) as error:
        reason = first_line(error)
        if group is not None and "group not found" in reason:
            raise ValueError(
                f"--group: {str(path)!r} has no group {group!r} (groups: {netcdf_groups(path)})"
            ) from None
        if "HDF error" in reason:
            reason += (
                " (the file may be incomplete, still being written, or locked by a program "
                "that holds it open: wait until it is closed; a complete file on a file "
                "system without locks reads with HDF5_USE_FILE_LOCKING=FALSE)"
            )
        raise ValueError(f"{argument}: could not read {str(path)!r} as netCDF: {reason}") from None
    if not ds.data_vars:
        groups = netcdf_groups(path, group)
        if groups:
            ds.close()
            where = "its root" if group is None else f"group {group!r}"
            advice = (
                f"pass {option} NAME"
                if option is not None
                else "write its variables at the root, e.g. "
                "xr.open_dataset(FILE, group=NAME).to_netcdf(NEW)"
            )
            raise ValueError(
                f"{argument}: {str(path)!r} has no variables in {where}; they are in netCDF "
                f"group(s) {groups}: {advice}"
            )
    return ds


def netcdf_groups(path: Path, under: str | None = None) -> list[str]:
    """The paths of the netCDF groups in ``path`` below ``under`` (the root by default)
    that hold variables, e.g. ``['obs', 'obs/monthly']``; [] where it cannot tell."""
    import netCDF4

    found: list[str] = []

    def walk(node: Any, prefix: str) -> None:
        for name, child in node.groups.items():
            path_name = f"{prefix}{name}"
            if child.variables:
                found.append(path_name)
            walk(child, path_name + "/")

    try:
        with netCDF4.Dataset(path) as root:
            node = root if under is None else root[under.strip("/")]
            walk(node, "" if under is None else under.strip("/") + "/")
    except (OSError, IndexError, KeyError, RuntimeError):
        return []
    return found


def _close_quietly(path: Path) -> None:
    """Close the netCDF file xarray still holds open for ``path`` after a failed write.

    Its file manager would otherwise close it when garbage-collected, and a failing close
    there ("NetCDF: HDF error" on a full disk) prints a traceback, after the one-line
    error, at a moment nobody chose. (xarray offers no public handle on it: its file
    cache is looked up by the path it was opened with.)
    """
    try:
        from xarray.backends.file_manager import FILE_CACHE
    except ImportError:  # pragma: no cover - xarray's internals moved
        return
    for key in list(FILE_CACHE.keys()):
        try:
            args = tuple(key[1])  # (opener, args, mode, kwargs, id)
        except (TypeError, IndexError):
            continue
        if str(path) in map(str, args):
            handle = FILE_CACHE.pop(key, None)
            try:
                if handle is not None:
                    handle.close()
            except (OSError, RuntimeError):  # the disk is still full
                pass


def _write_infilled(
    result: Any, counts: dict, observer: Any, tmp: Path, output: Path, label: str | None
) -> dict[str, Any]:
    """Stream ``result`` into ``tmp`` (with a progress bar of ``counts["fields"]`` named
    ``label``, if given), computing the share of holes (``counts["holes"]``) and tallying
    unreachable holes (``observer``'s, whose blocks write it) in the same pass; record the
    share in its history, and return the counts. Write failures name ``output``."""
    import dask

    from xcrai.files import is_write_failure, write_error
    from xcrai.infill import field_bar

    try:
        write = result.to_netcdf(tmp, compute=False)
        total = sum(int(n) for n in counts["fields"].values())
        bar = (
            field_bar(total, observer, f"infilling {label}")
            if label is not None
            else nullcontext()
        )
        with bar:
            _, holes = dask.compute(write, counts["holes"])
        counts = {**counts, "holes": holes, "unreached": observer.unreached}
    except (OSError, RuntimeError) as error:
        _close_quietly(tmp)
        if is_write_failure(error):
            raise write_error("output", output, error) from error
        raise
    try:
        _fill_in_fractions(tmp, counts["holes"])
    except (OSError, RuntimeError) as error:  # only the output is touched here
        raise write_error("output", output, error) from error
    return counts


def _chunks(ds, variables, time_chunk) -> dict:
    from xcrai.grid import find_dim

    names = variables or list(ds.data_vars)
    for name in names:
        if name not in ds:
            continue
        time = find_dim(ds[name], "time")
        if time is None:
            continue
        if time_chunk is None:
            per_step = ds[name].dtype.itemsize * ds[name].size // max(ds.sizes[time], 1)
            time_chunk = max(1, CHUNK_BYTES // max(per_step, 1))
        return {time: time_chunk}
    return {}


def _fill_in_fractions(path: str | Path, fractions: dict) -> None:
    """Replace the lazy-input note in the history with the computed fraction per variable."""
    import netCDF4

    from xcrai.infill import LAZY_NOTE, fraction_note

    with netCDF4.Dataset(path, "a") as nc:
        lines = nc.getncattr("history").split("\n") if "history" in nc.ncattrs() else []
        for name, fraction in fractions.items():
            for i, line in enumerate(lines):
                if f"infilled {name} with" in line and LAZY_NOTE in line:  # each member's
                    lines[i] = line.replace(LAZY_NOTE, fraction_note(float(fraction)))
        nc.setncattr("history", "\n".join(lines))


def fit_file(args: argparse.Namespace) -> Path:
    """Train from netCDF files and save the model (the ``xcrai fit`` command)."""
    import xcrai.accessor  # noqa: F401  (registers .crai)
    from xcrai.files import refuse_overwriting_inputs
    from xcrai.options import DEFAULT_ARCHITECTURE, FitOptions
    from xcrai.train.checkpoints import checkpoint_files

    output = Path(args.output)
    validation = args.validation or None  # 0: none
    validation_file = validation if isinstance(validation, Path) else None
    inputs = {"data": args.data, "masks": args.masks, "validation": validation_file,
              "steady_mask": args.steady_mask}  # fmt: skip
    refuse_overwriting_inputs(output, {**inputs, "resume": args.resume})
    architecture: dict[str, Any] | None = {n: getattr(args, n) for n in ARCHITECTURE_OPTIONS}
    if isinstance(args.init, Path) and architecture == {
        n: DEFAULT_ARCHITECTURE[n] for n in ARCHITECTURE_OPTIONS
    }:  # a model to start from brings its own network
        architecture = None
    options = options_from(FitOptions, args, architecture=architecture)
    checkpoints = checkpoint_files(options)
    refuse_overwriting_inputs(output, checkpoints)  # the checkpoints the run reads or writes
    folders = {f.parent.resolve() for f in checkpoints.values()}
    if any(output.resolve() in (f, *f.parents) for f in folders):
        raise ValueError(  # training would make it a folder, then fail to save there
            f"output: {str(output)!r} is a folder the run keeps its checkpoints in "
            "(checkpoint_dir, or a folder above it); choose another path"
        )
    _check_output(output, args.overwrite)
    for name, path in inputs.items():
        if path is not None and not Path(path).is_file():
            raise FileNotFoundError(f"{name}: no file at {str(path)!r}")
    with (
        _open_netcdf(args.data, "data", group=args.group) as data_file,
        _open_netcdf(args.masks, "masks") as mask_file,
    ):
        if args.inputs is None and args.target is None:
            model = _fit_one(args, data_file, mask_file, validation, validation_file, options)
        else:
            model = _fit_several(args, data_file, mask_file, validation, validation_file,
                                 options)  # fmt: skip
    if options.distributed:
        import torch.distributed as dist

        if dist.get_rank() != 0:  # every process holds the same model; one writes it
            return output
    from xcrai.model import save_model

    return save_model(model, output, argument="output", overwrite=args.overwrite)


def _fit_one(args: argparse.Namespace, data_file: Any, mask_file: Any, validation: Any,
             validation_file: Path | None, options: Any) -> Any:  # fmt: skip
    """``xcrai fit`` of one variable (``--var``)."""
    from xcrai.infill import gridded_variables

    var = args.var or _only(gridded_variables(data_file), "var", args.data)
    if var not in data_file:
        raise ValueError(f"var: {var!r} not in {args.data}; it has {list(data_file.data_vars)}")
    mask_var = args.mask_var or (var if var in mask_file else None)
    mask_var = mask_var or _only(gridded_variables(mask_file), "mask-var", args.masks)
    if mask_var not in mask_file:
        raise ValueError(f"mask-var: {mask_var!r} not in {args.masks}")
    if validation_file is not None:
        with _open_netcdf(validation_file, "validation") as validation_data:
            if var not in validation_data:
                raise ValueError(f"validation: {var!r} (as --var) not in {validation_file}; "
                                 f"it has {list(validation_data.data_vars)}")  # fmt: skip
            validation = validation_data[var].load()
    steady = None
    if args.steady_mask is not None:
        steady = read_steady_mask(Path(args.steady_mask), args.steady_mask_var)
    model = data_file[var].crai.fit(
        mask_file[mask_var].load(), validation=validation, steady_mask=steady,
        **_fields(options),
    )  # fmt: skip
    return model


def _fit_several(args: argparse.Namespace, data_file: Any, mask_file: Any, validation: Any,
                 validation_file: Path | None, options: Any) -> Any:  # fmt: skip
    """``xcrai fit`` of several variables (``--inputs``) or a target (``--target``)."""
    from xcrai.infill import gridded_variables

    if args.inputs is not None and args.var is not None:
        raise ValueError("var: give the inputs with --inputs, or one variable with --var")
    if args.inputs is not None:
        inputs = list(args.inputs)
    else:
        others = [v for v in gridded_variables(data_file) if v != args.target]
        inputs = [args.var or _only(others, "var", args.data)]
    if not all(inputs):
        raise ValueError(f"inputs: expected comma-separated variable names, got {inputs}")
    repeated = sorted({v for v in inputs if inputs.count(v) > 1})
    if repeated:
        raise ValueError(f"inputs: {repeated} given more than once; name each input once")
    names = [*inputs, *([args.target] if args.target and args.target not in inputs else [])]
    missing = [v for v in names if v not in data_file]
    if missing:
        raise ValueError(f"inputs: {missing} not in {args.data}; it has "
                         f"{list(data_file.data_vars)}")  # fmt: skip
    if args.mask_var is not None:
        if args.mask_var not in mask_file:
            raise ValueError(f"mask-var: {args.mask_var!r} not in {args.masks}")
        masks: Any = mask_file[args.mask_var].load()  # the same patterns for every input
    elif all(v in mask_file for v in inputs):
        masks = {v: mask_file[v].load() for v in inputs}
    else:
        only = _only(gridded_variables(mask_file), "mask-var", args.masks)
        masks = mask_file[only].load()
    if validation_file is not None:
        with _open_netcdf(validation_file, "validation") as validation_data:
            lacking = [v for v in names if v not in validation_data]
            if lacking:
                raise ValueError(f"validation: {lacking} not in {validation_file}; it has "
                                 f"{list(validation_data.data_vars)}")  # fmt: skip
            validation = validation_data[names].load()
    steady = None
    if args.steady_mask is not None:
        steady = read_steady_mask(Path(args.steady_mask), args.steady_mask_var)
    return data_file.crai.fit(
        masks, inputs=inputs, target=args.target, validation=validation, steady_mask=steady,
        **_fields(options),
    )  # fmt: skip


def _only(names: Sequence[Hashable], option: str, path: Path) -> str:
    if len(names) != 1:
        raise ValueError(
            f"{option}: {path} has gridded variables {list(names)}; name one with --{option}"
        )
    return str(names[0])


def run_demo(output_dir: Path, device: str = "auto") -> tuple[Path, Path]:
    """Infill the bundled HadCRUT4 sample with the bundled demo model (``xcrai demo``).

    Checks that matplotlib is installed and that ``output_dir`` can be written before any
    work; writes ``hadcrut4_infilled.nc`` and ``hadcrut4_infilled.png`` there.
    """
    from xcrai.plot import require_matplotlib

    require_matplotlib("xcrai demo")
    import matplotlib

    matplotlib.use("Agg")
    import xarray as xr

    import xcrai.accessor  # noqa: F401  (registers .crai)
    import xcrai.data as data
    from xcrai.checkpoint import load_model
    from xcrai.files import atomic_path, check_writable, make_folder
    from xcrai.plot import plot_infilled

    output_dir = make_folder(output_dir, "--output-dir")
    nc_path = output_dir / "hadcrut4_infilled.nc"
    png_path = output_dir / "hadcrut4_infilled.png"
    for path in (nc_path, png_path):
        check_writable(path, "--output-dir")
    with xr.open_dataset(data.hadcrut4_sample()) as ds:
        ds = ds.load()
    model = load_model(data.demo_model(), padding="global")
    filled = ds.crai.infill(model, variables=["tas"], device=device)
    with atomic_path(nc_path) as tmp:
        filled.to_netcdf(tmp)
    fig = plot_infilled(ds.tas, filled.tas)
    fig.suptitle("HadCRUT4 infilled with CRAI's demo model (20crtasgn72) by xcrai")
    with atomic_path(png_path) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    return nc_path, png_path


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread so that it unwinds (and cleans up) like Ctrl-C."""


@contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """Turn SIGTERM into :class:`Terminated` during the block, then restore the handler.

    Left alone outside the main thread (signals cannot be handled there) and when
    SIGTERM was set to something other than its default (e.g. ignored by the caller).
    """
    on_main = threading.current_thread() is threading.main_thread()
    if not on_main or signal.getsignal(signal.SIGTERM) != signal.SIG_DFL:
        yield
        return

    def terminate(signum: int, frame: Any) -> None:
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def _warnings_as_lines(command: str) -> Iterator[None]:
    """Show warnings as ``xcrai COMMAND: warning: ...`` lines on stderr during the block.

    Python would name a file and line of xcrai or runpy, which say nothing to someone at
    the command line. Warning filters (``-W``, ``PYTHONWARNINGS``) still apply.
    """
    previous = warnings.showwarning

    def show(message: Any, category: Any, filename: str, lineno: int, file: Any = None,
             line: Any = None) -> None:  # fmt: skip
        print(f"xcrai {command}: warning: {message}", file=file or sys.stderr)

    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = previous


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``xcrai`` command.

    Returns the exit status: 0 on success; 2 for an error, reported in one line (bad
    arguments, unreadable files, an output that cannot be written, a full disk); 130
    after Ctrl-C (SIGINT) and 143 after SIGTERM, once temporary files are removed.
    """
    args = build_parser().parse_args(argv)
    try:
        with _terminate_as_interrupt(), _warnings_as_lines(args.command):
            _run(args)
    except Terminated:
        print(f"xcrai {args.command}: terminated", file=sys.stderr)
        return EXIT_TERMINATED
    except KeyboardInterrupt:
        print(f"xcrai {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (ValueError, TypeError, OSError) as error:
        print(f"xcrai {args.command}: error: {error}", file=sys.stderr)
        return 2
    return 0


def _run(args: argparse.Namespace) -> None:
    """Carry out the parsed command."""
    if args.command == "infill":
        from xcrai.options import InfillOptions

        path = infill_file(
            args.input, args.model, args.output, options_from(InfillOptions, args),
            variables=args.variables, mask=args.mask, mask_var=args.mask_var,
            steady_mask=args.steady_mask, steady_mask_var=args.steady_mask_var,
            time_chunk=args.time_chunk, memory=args.memory, overwrite=args.overwrite,
            label=args.label, inputs=args.inputs, target=args.target, group=args.group,
        )  # fmt: skip
        print(f"wrote {path}")
    elif args.command == "fit":
        print(f"wrote {fit_file(args)}")
    elif args.command == "models":
        from xcrai.zoo import REGISTRY, format_table

        if args.name is None:
            print(format_table(REGISTRY.entries()))
        elif args.name in REGISTRY:
            print(REGISTRY[args.name].describe())
        elif Path(args.name).is_file():
            from xcrai.checkpoint import load_any

            print(load_any(args.name).card)
        else:
            raise ValueError(
                f"NAME: no registered model {args.name!r}; registered: {REGISTRY.names()}"
            )
    elif args.command == "demo":
        nc_path, png_path = run_demo(args.output_dir, args.device)
        print(f"wrote {nc_path}\nwrote {png_path}")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
