"""The ``xcrai`` command line: a thin layer over the Python API."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

#: bytes of input per dask chunk when streaming a file
CHUNK_BYTES = 8 * 2**20
#: exit statuses after Ctrl-C and SIGTERM (128 + the signal's number, as shells report)
EXIT_INTERRUPTED, EXIT_TERMINATED = 130, 143


def _time_context(text: str) -> tuple[int, int]:
    try:
        past, future = (int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected P,F (two non-negative integers, e.g. 3,1), got {text!r}"
        ) from None
    return past, future


def _loss(text: str) -> dict[str, float]:
    try:
        pairs = (item.split("=") for item in text.split(","))
        return {name.strip(): float(value) for name, value in pairs}
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected TERM=WEIGHT pairs separated by commas (e.g. hole=1), got {text!r}"
        ) from None


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _threads(text: str) -> int | str:
    return text if text == "auto" else _positive(text)


def build_parser() -> argparse.ArgumentParser:
    from xcrai.numerics import PRECISIONS, TRAINING_PRECISIONS

    parser = argparse.ArgumentParser(
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
        "-m", "--model", required=True,
        help="CRAI checkpoint, xcrai model file, or registered name (see `xcrai models`)",
    )  # fmt: skip
    infill.add_argument("-o", "--output", required=True, type=Path, help="netCDF file to write")
    infill.add_argument(
        "--var", action="append", dest="variables", metavar="NAME",
        help="variable to infill (repeatable); default: every variable with lat/lon dimensions",
    )  # fmt: skip
    infill.add_argument(
        "--padding", choices=("zeros", "global", "auto"), default=None,
        help="convolution padding: global wraps longitude (uniform 360-degree grids), zeros "
        "pads with zeros; default: the model's, 'auto' for CRAI checkpoints (global when the "
        "longitude covers the globe)",
    )  # fmt: skip
    infill.add_argument(
        "--time-context", type=_time_context, default=None, metavar="P,F",
        help="past and future steps stacked as channels (needed for CRAI time-context models)",
    )  # fmt: skip
    infill.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda:N")
    infill.add_argument(
        "--batch-size", type=_positive, default=None, metavar="N",
        help="fields per forward pass (default: from free memory)",
    )  # fmt: skip
    infill.add_argument(
        "--precision", choices=tuple(PRECISIONS), default="fp32",
        help="arithmetic of the convolutions (default fp32, IEEE on every device; "
        "tf32/bf16/fp16 are faster on GPUs)",
    )  # fmt: skip
    infill.add_argument(
        "--threads", type=_threads, default="auto", metavar="N",
        help="CPU threads (default auto: the cores other processes leave free)",
    )  # fmt: skip
    infill.add_argument(
        "--compile", action="store_true",
        help="run the network through torch.compile: faster on long runs, after a one-off "
        "build of 10-60 s",
    )  # fmt: skip
    infill.add_argument(
        "--time-chunk", type=_positive, default=None, metavar="N",
        help=f"time steps read per chunk (default: about {CHUNK_BYTES // 2**20} MiB of input)",
    )  # fmt: skip
    infill.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it exists")
    infill.add_argument("--no-progress", action="store_true", help="do not show a progress bar")

    fit = commands.add_parser(
        "fit",
        help="train a model on complete fields and coverage masks",
        description="Train a partial-convolution U-Net on complete fields (DATA) with coverage "
        "patterns (MASKS) and save it as an xcrai model file, which `xcrai infill` and "
        "`.crai.infill` use without further options.",
    )
    fit.add_argument("data", type=Path, help="netCDF file with complete training fields")
    fit.add_argument("--var", default=None, help="variable of DATA (default: the only gridded one)")
    fit.add_argument(
        "--masks",
        required=True,
        type=Path,
        help="netCDF file of coverage patterns (1/0, bool, or NaN = missing)",
    )
    fit.add_argument("--mask-var", default=None, help="variable of MASKS (default: as --var)")
    fit.add_argument("-o", "--output", required=True, type=Path, help="model file to write")
    fit.add_argument(
        "--validation",
        type=float,
        default=0.1,
        help="fraction of the time axis (its end) held out (default 0.1; 0 for none)",
    )
    fit.add_argument("--iterations", type=_positive, default=10_000, help="default 10000")
    fit.add_argument("--batch-size", type=_positive, default=16, help="default 16")
    fit.add_argument("--lr", type=float, default=2e-4, help="Adam learning rate (default 2e-4)")
    fit.add_argument(
        "--finetune-iterations",
        type=int,
        default=0,
        help="further iterations with the encoder's batch norm frozen (default 0)",
    )
    fit.add_argument("--lr-finetune", type=float, default=5e-5, help="default 5e-5")
    fit.add_argument(
        "--loss",
        type=_loss,
        default=None,
        metavar="TERM=W,...",
        help="loss weights, e.g. hole=1 or valid=1,hole=6,tv=0.1 (the default)",
    )
    fit.add_argument(
        "--padding",
        choices=("zeros", "global", "auto"),
        default="auto",
        help="default auto: global for uniform 360-degree longitude",
    )
    fit.add_argument(
        "--time-context",
        type=_time_context,
        default=None,
        metavar="P,F",
        help="past and future steps stacked as channels (default 0,0)",
    )
    fit.add_argument(
        "--no-normalize",
        action="store_true",
        help="train on raw values instead of (x - mean) / std",
    )
    fit.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda:N")
    fit.add_argument("--seed", type=int, default=0, help="default 0")
    fit.add_argument(
        "--checkpoint-dir",
        type=Path,
        default=None,
        help="folder for checkpoint.pth (written atomically)",
    )
    fit.add_argument("--checkpoint-every", type=_positive, default=None, metavar="N")
    fit.add_argument(
        "--resume",
        type=Path,
        default=None,
        metavar="CKPT",
        help="training checkpoint (or its folder) to continue from",
    )
    fit.add_argument(
        "--early-stopping",
        type=int,
        default=None,
        metavar="PATIENCE",
        help="stop after PATIENCE logging steps without a better validation loss",
    )
    fit.add_argument(
        "--init",
        default="kaiming",
        choices=("kaiming", "gaussian", "xavier", "orthogonal", "torch"),
        help="initialisation of the convolution weights (default kaiming)",
    )
    fit.add_argument(
        "--precision", choices=TRAINING_PRECISIONS, default="fp32",
        help="arithmetic of forward and backward passes (default fp32, IEEE on every device)",
    )  # fmt: skip
    fit.add_argument(
        "--deterministic", action=argparse.BooleanOptionalAction, default=True,
        help="deterministic algorithms, no cuDNN autotuning: the same weights for the same "
        "seed on CUDA (default: on)",
    )  # fmt: skip
    fit.add_argument(
        "--threads", type=_threads, default="auto", metavar="N",
        help="CPU threads (default auto: the cores other processes leave free at the start)",
    )  # fmt: skip
    fit.add_argument(
        "--distributed",
        action="store_true",
        help="data-parallel training under torchrun (one process per GPU, or gloo "
        "on CPUs): torchrun --nproc-per-node N -m xcrai.cli fit ... --distributed",
    )
    fit.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it exists")
    fit.add_argument("--no-progress", action="store_true", help="do not show a progress bar")

    commands.add_parser(
        "models",
        help="list the registered model names",
        description="List the models that -m/--model and xcrai.load_model accept by name.",
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


def infill_file(
    input: Path,
    model: str,
    output: Path,
    *,
    variables: Sequence[str] | None = None,
    padding: str | None = None,
    time_context: tuple[int, int] | None = None,
    device: str = "auto",
    batch_size: int | None = None,
    precision: str = "fp32",
    compile: bool = False,
    threads: int | str = "auto",
    time_chunk: int | None = None,
    overwrite: bool = False,
    progress: bool = True,
    flags: bool = False,
) -> Path:
    """Infill a netCDF file into another, streaming through dask (the ``xcrai infill`` command).

    With ``flags``, each infilled variable ``<var>`` gets a CF flag variable ``<var>_flag``
    (1 observed, 0 infilled, -1 hole beyond the network's reach) named in its
    ``ancillary_variables``. Holes beyond the network's reach and fields without any
    valid point are counted by the same computation that writes the file, and reported
    in one line on stderr after the progress bar.

    Everything that would stop the write is checked before any work: the output is not
    the input (nor a link to it), not a folder, not a ``.zarr`` name, not an existing file
    without ``overwrite``, and its folder is writable. The output is written to a
    temporary file beside it and renamed when complete; a failed write (full disk, file
    size limit) raises :class:`xcrai.files.WriteError` and leaves no file.
    """
    import numpy as np

    import xcrai
    from xcrai.files import atomic_path, refuse_overwriting_inputs
    from xcrai.infill import count_unreached, infill_variables

    input, output = Path(input), Path(output)
    if not input.is_file():
        raise FileNotFoundError(f"input: no file at {str(input)!r}")
    refuse_overwriting_inputs(output, {"input": input})
    if output.suffix.lower() == ".zarr":
        raise ValueError(
            f"output: {str(output)!r} names a zarr store, but xcrai infill writes netCDF; "
            "name a .nc file, or write zarr from Python with the result's .to_zarr(...), "
            "e.g. ds.crai.infill(model).to_zarr(store)"
        )
    _check_output(output, overwrite)
    variables = list(dict.fromkeys(variables)) if variables else None  # --var a --var a
    model_obj = xcrai.load_model(model)
    with _open_netcdf(input, "input", chunks={}) as probe:
        chunks = _chunks(probe, variables, time_chunk)
    ds = _open_netcdf(input, "input", chunks=chunks)
    try:
        result, infilled = infill_variables(
            ds, model_obj, variables=variables, flags=flags, padding=padding,
            time_context=time_context, device=device, batch_size=batch_size,
            precision=precision, compile=compile, threads=threads,
        )  # fmt: skip
        counts = {
            "holes": {name: (~np.isfinite(ds[name].data)).mean() for name in infilled},
            "unreached": {name: count_unreached(r.flag, r.spatial) for name, r in infilled.items()},
        }
        with atomic_path(output) as tmp:
            counts = _write_infilled(result, counts, tmp, output, input.name if progress else None)
    finally:
        ds.close()
    _report_unreached(counts["unreached"], flags)
    return output


def _report_unreached(counts: dict, flags: bool) -> None:
    """One line on stderr for the holes the network did not reach, once the file is
    written (not into the progress bar), pointing at ``--flags`` where it was not given."""
    from xcrai.infill import flagged_names, unreached_message

    message = unreached_message(counts)
    if message:
        names = flagged_names(counts)
        hint = f"flagged -1 in {names}" if flags else f"pass --flags for {names} (-1 there)"
        print(f"xcrai infill: warning: {message}; {hint}", file=sys.stderr)


def _check_output(output: Path, overwrite: bool) -> None:
    """Refuse an output that could not or should not be written, before any work."""
    from xcrai.files import check_writable

    check_writable(output, "output")
    if output.exists() and not overwrite:
        raise FileExistsError(f"output: {str(output)!r} exists; pass --overwrite to replace it")


def _open_netcdf(path: Path, argument: str, **kwargs: Any) -> Any:
    """``xr.open_dataset(path)``, with an error that names the file when it is not netCDF."""
    import xarray as xr

    try:
        return xr.open_dataset(path, **kwargs)
    except (ValueError, OSError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ValueError(f"{argument}: could not read {str(path)!r} as netCDF: {reason}") from None


def _write_infilled(
    result: Any, counts: dict, tmp: Path, output: Path, label: str | None
) -> dict[str, Any]:
    """Stream ``result`` into ``tmp`` (with a progress bar named ``label``, if given),
    computing ``counts`` in the same pass; record the share of holes
    (``counts["holes"]``) in its history, and return the computed counts. Write
    failures name ``output``."""
    import dask

    from xcrai.files import is_write_failure, write_error

    try:
        write = result.to_netcdf(tmp, compute=False)
        if label is not None:
            from tqdm.dask import TqdmCallback

            with TqdmCallback(desc=f"infilling {label}", unit="task"):
                _, counts = dask.compute(write, counts)
        else:
            _, counts = dask.compute(write, counts)
    except (OSError, RuntimeError) as error:
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
                if f"infilled {name} with" in line and LAZY_NOTE in line:
                    lines[i] = line.replace(LAZY_NOTE, fraction_note(float(fraction)))
                    break
        nc.setncattr("history", "\n".join(lines))


def fit_file(args: argparse.Namespace) -> Path:
    """Train from netCDF files and save the model (the ``xcrai fit`` command)."""
    import xcrai  # noqa: F401  (registers .crai)
    from xcrai.checkpoint import save_model
    from xcrai.files import refuse_overwriting_inputs
    from xcrai.infill import gridded_variables

    output = Path(args.output)
    refuse_overwriting_inputs(
        output, {"data": args.data, "masks": args.masks, "resume": args.resume}
    )
    _check_output(output, args.overwrite)
    for name, path in (("data", args.data), ("masks", args.masks)):
        if not Path(path).is_file():
            raise FileNotFoundError(f"{name}: no file at {str(path)!r}")
    with (
        _open_netcdf(args.data, "data") as data_file,
        _open_netcdf(args.masks, "masks") as mask_file,
    ):
        var = args.var or _only(gridded_variables(data_file), "var", args.data)
        if var not in data_file:
            raise ValueError(f"var: {var!r} not in {args.data}; it has {list(data_file.data_vars)}")
        mask_var = args.mask_var or (var if var in mask_file else None)
        mask_var = mask_var or _only(gridded_variables(mask_file), "mask-var", args.masks)
        if mask_var not in mask_file:
            raise ValueError(f"mask-var: {mask_var!r} not in {args.masks}")
        model = data_file[var].crai.fit(
            mask_file[mask_var].load(), validation=args.validation or None,
            iterations=args.iterations, batch_size=args.batch_size, lr=args.lr,
            finetune_iterations=args.finetune_iterations, lr_finetune=args.lr_finetune,
            loss=args.loss, padding=args.padding, time_context=args.time_context,
            normalize=not args.no_normalize, device=args.device, seed=args.seed,
            checkpoint_dir=args.checkpoint_dir, checkpoint_every=args.checkpoint_every,
            resume=args.resume, progress=not args.no_progress,
            early_stopping=args.early_stopping, init=args.init, distributed=args.distributed,
            precision=args.precision, deterministic=args.deterministic, threads=args.threads,
        )  # fmt: skip
    if args.distributed:
        import torch.distributed as dist

        if dist.get_rank() != 0:  # every process holds the same model; one writes it
            return output
    return save_model(model, output, argument="output")


def _only(names: list[str], option: str, path: Path) -> str:
    if len(names) != 1:
        raise ValueError(
            f"{option}: {path} has gridded variables {names}; name one with --{option}"
        )
    return names[0]


def run_demo(output_dir: Path, device: str = "auto") -> tuple[Path, Path]:
    """Infill the bundled HadCRUT4 sample with the bundled demo model (``xcrai demo``)."""
    import matplotlib

    matplotlib.use("Agg")
    import xarray as xr

    import xcrai
    from xcrai.files import atomic_path
    from xcrai.plot import plot_infilled

    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    nc_path = output_dir / "hadcrut4_infilled.nc"
    png_path = output_dir / "hadcrut4_infilled.png"
    with xr.open_dataset(xcrai.data.hadcrut4_sample()) as ds:
        ds = ds.load()
    model = xcrai.load_model(xcrai.data.demo_model(), padding="global")
    filled = ds.crai.infill(model, variables=["tas"], device=device)
    with atomic_path(nc_path) as tmp:
        filled.to_netcdf(tmp)
    fig = plot_infilled(ds.tas, filled.tas)
    fig.suptitle("HadCRUT4 infilled with CRAI's demo model (20crtasgn72) by xcrai")
    fig.savefig(png_path, dpi=90)
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
        path = infill_file(
            args.input, args.model, args.output, variables=args.variables,
            padding=args.padding, time_context=args.time_context, device=args.device,
            batch_size=args.batch_size, precision=args.precision, compile=args.compile,
            threads=args.threads, time_chunk=args.time_chunk, overwrite=args.overwrite,
            progress=not args.no_progress,
        )  # fmt: skip
        print(f"wrote {path}")
    elif args.command == "fit":
        print(f"wrote {fit_file(args)}")
    elif args.command == "models":
        from xcrai.zoo import REGISTRY

        for entry in REGISTRY.entries():
            where = "bundled" if entry.path is not None else entry.url
            print(f"{entry.name}\t{where}\t{entry.description}")
    elif args.command == "demo":
        nc_path, png_path = run_demo(args.output_dir, args.device)
        print(f"wrote {nc_path}\nwrote {png_path}")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
