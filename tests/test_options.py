"""One source of truth per verb: the options dataclasses, the accessor signatures and the CLI."""

from __future__ import annotations

import argparse
import inspect
import re
from dataclasses import FrozenInstanceError, fields
from pathlib import Path

import pytest
import xarray as xr

from xcrai.choices import INITS, PADDING_CHOICES, TRAINING_PRECISIONS
from xcrai.cli import API_ONLY, CLI_ONLY, add_options, build_parser, options_from
from xcrai.nn import DESIGNS
from xcrai.numerics import PRECISIONS
from xcrai.options import (
    ARCHITECTURE_CHOICES,
    DEFAULT_ARCHITECTURE,
    FitOptions,
    InfillOptions,
)
from xcrai.train.losses import LossWeights

SOURCE = Path(__file__).parents[1] / "xcrai"
#: arguments of each method before its options: (name, default), data rather than options
DATA_ARGUMENTS = {
    (xr.DataArray, "infill"): [
        ("model", inspect.Parameter.empty),
        ("mask", None),
        ("steady_mask", None),
    ],
    (xr.Dataset, "infill"): [
        ("model", inspect.Parameter.empty),
        ("variables", None),
        ("mask", None),
        ("steady_mask", None),
    ],
    (xr.DataArray, "fit"): [
        ("masks", inspect.Parameter.empty),
        ("validation", 0.1),
        ("steady_mask", None),
    ],
    (xr.Dataset, "fit"): [
        ("masks", inspect.Parameter.empty),
        ("inputs", None),
        ("target", None),
        ("validation", 0.1),
        ("steady_mask", None),
    ],
}
OPTIONS = {"infill": InfillOptions, "fit": FitOptions}


def _parameters(cls: type, verb: str) -> list[inspect.Parameter]:
    return list(inspect.signature(getattr(cls.crai, verb)).parameters.values())[1:]  # no self


@pytest.mark.parametrize(("cls", "verb"), list(DATA_ARGUMENTS))
def test_accessor_signature_is_the_options_fields(cls, verb):
    """Each accessor method spells out its options: the fields, in order, with their defaults
    and keyword-only, after the data arguments."""
    found = [(p.name, p.default) for p in _parameters(cls, verb)]
    options = [(f.name, f.default) for f in fields(OPTIONS[verb])]
    assert found == DATA_ARGUMENTS[(cls, verb)] + options
    assert all(p.kind is p.KEYWORD_ONLY for p in _parameters(cls, verb)[1:])


@pytest.mark.parametrize(("cls", "verb"), list(DATA_ARGUMENTS))
def test_accessor_docstring_describes_every_option(cls, verb):
    doc = getattr(cls.crai, verb).__doc__
    described = set(re.findall(r"^\s{8}(\w[\w, ]*?)(?: :|$)", doc, flags=re.M))
    names = {n.strip() for line in described for n in line.split(",")}
    missing = [p.name for p in _parameters(cls, verb) if p.name not in names]
    assert not missing, f"{cls.__name__}.crai.{verb}'s docstring does not describe {missing}"


def _cli_options(verb: str) -> dict[str, argparse.Action]:
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    sub = commands.choices[verb]
    return {a.dest: a for a in sub._actions if not isinstance(a, argparse._HelpAction)}


def _api_options(verb: str) -> dict[str, inspect.Parameter]:
    found = {}
    for cls, name in DATA_ARGUMENTS:
        if name == verb:
            found.update({p.name: p for p in _parameters(cls, verb)})
    return found


@pytest.mark.parametrize("verb", ["infill", "fit"])
def test_every_api_option_is_on_the_command_line_with_its_default(verb):
    cli = _cli_options(verb)
    for name, parameter in _api_options(verb).items():
        if name in API_ONLY[verb]:
            assert name not in cli, f"{name} is listed as API-only but the CLI has it"
            continue
        assert name in cli, f"{verb}: the API's {name!r} has no command-line option"
        if parameter.default is inspect.Parameter.empty:  # data the command reads from a file
            assert cli[name].required, f"{verb}: --{name} must be required, as in the API"
        else:
            assert cli[name].default == parameter.default, name


@pytest.mark.parametrize("verb", ["infill", "fit"])
def test_every_command_line_option_is_in_the_api(verb):
    api = _api_options(verb)
    for name, action in _cli_options(verb).items():
        if name in CLI_ONLY[verb]:
            assert name not in api, f"{name} is listed as CLI-only but the API has it"
            continue
        assert name in api, f"{verb}: {action.option_strings or name} is not in the API"


def test_architecture_options_default_to_the_api_default():
    """``architecture`` (API-only) is --n-filters/--depth/--normalization on the command line."""
    cli = _cli_options("fit")
    assert {name: cli[name].default for name in DEFAULT_ARCHITECTURE} == DEFAULT_ARCHITECTURE
    assert cli["normalization"].choices is ARCHITECTURE_CHOICES["normalization"]


def test_parsed_defaults_are_the_default_options():
    parser = build_parser()
    args = parser.parse_args(["infill", "in.nc", "-m", "m.pth", "-o", "out.nc"])
    assert options_from(InfillOptions, args) == InfillOptions()
    args = parser.parse_args(["fit", "d.nc", "--masks", "m.nc", "-o", "m.pth"])
    assert options_from(FitOptions, args) == FitOptions()


def test_command_line_values_become_options():
    parser = build_parser()
    args = parser.parse_args(
        ["infill", "in.nc", "-m", "m", "-o", "o.nc", "--tile-size", "40", "--flags",
         "--time-context", "3,1", "--threads", "2", "--precision", "bf16", "--compile"]
    )  # fmt: skip
    assert options_from(InfillOptions, args) == InfillOptions(
        tile_size=40, return_output=True, time_context=(3, 1), threads=2, precision="bf16",
        compile=True,
    )  # fmt: skip
    args = parser.parse_args(
        ["fit", "d.nc", "--masks", "m.nc", "-o", "m.pth", "--augment", "no", "--no-normalize",
         "--loss", "hole=1", "--log-every", "5", "--vgg-weights", "vgg.pth", "--no-progress",
         "--init", "xavier", "--early-stopping", "0", "--mix", "0.25"]
    )  # fmt: skip
    assert options_from(FitOptions, args) == FitOptions(
        augment=False, normalize=False, loss={"hole": 1}, log_every=5,
        vgg_weights=Path("vgg.pth"), progress=False, init="xavier", early_stopping=0,
        mix=0.25,
    )  # fmt: skip


def test_choices_come_from_their_single_source():
    infill, fit = _cli_options("infill"), _cli_options("fit")
    assert infill["padding"].choices is PADDING_CHOICES is fit["padding"].choices
    assert tuple(infill["precision"].choices) == tuple(PRECISIONS)
    assert fit["precision"].choices is TRAINING_PRECISIONS
    # --init takes a scheme or a model file: the schemes named in its help, from INITS
    assert fit["init"].metavar == "{" + ",".join(INITS) + "}|MODEL"
    assert [fit["init"].type(name) for name in INITS] == list(INITS)
    assert fit["init"].type("tuned.pth") == Path("tuned.pth")
    assert tuple(fit["network"].choices) == tuple(DESIGNS)
    # and no module spells a choice list out again
    text = "\n".join(path.read_text() for path in SOURCE.rglob("*.py"))
    for choices in (PADDING_CHOICES, INITS, TRAINING_PRECISIONS, tuple(PRECISIONS)):
        literal = ", ".join(repr(c).replace("'", '"') for c in choices)
        assert text.count(f"({literal})") + text.count(f"[{literal}]") <= 1, literal


@pytest.mark.parametrize(
    ("options", "kwargs", "error", "message"),
    [
        (InfillOptions, {"padding": "circular"}, ValueError, "padding: expected one of"),
        (InfillOptions, {"batch_size": 0}, ValueError, "batch_size: expected an integer >= 1"),
        (InfillOptions, {"tile_size": 2.5}, ValueError, "tile_size: expected an integer"),
        (InfillOptions, {"precision": "fp8"}, ValueError, "precision: expected one of"),
        (InfillOptions, {"threads": 0}, ValueError, "threads: expected 'auto' or an integer"),
        (InfillOptions, {"compile": "yes"}, TypeError, "compile: expected True or False"),
        (InfillOptions, {"return_output": 1}, TypeError, "return_output: expected True"),
        (InfillOptions, {"time_context": (1,)}, ValueError, "time_context: expected a pair"),
        (InfillOptions, {"device": 0}, TypeError, "device: expected 'auto'"),
        (FitOptions, {"iterations": 0}, ValueError, "iterations: expected an integer >= 1"),
        (FitOptions, {"lr": -1.0}, ValueError, "lr: expected a positive learning rate"),
        (FitOptions, {"precision": "fp16"}, ValueError, "precision: expected one of"),
        (FitOptions, {"init": "ones"}, ValueError, "init: expected one of"),
        (FitOptions, {"augment": "yes"}, ValueError, "augment: expected True, False or 'auto'"),
        (FitOptions, {"mix": 2}, ValueError, "mix: expected a share from 0 to 1, got 2"),
        (FitOptions, {"loss": {"ssim": 1}}, ValueError, "loss: expected None or a dict"),
        (FitOptions, {"loss": {"style": 1}}, ValueError, "vgg_weights: the perceptual"),
        (FitOptions, {"loss": {"nll": float("nan")}}, ValueError, "loss: weights must be finite"),
        (FitOptions, {"loss": {"hole": float("inf")}}, ValueError, "loss: weights must be finite"),
        (FitOptions, {"loss": {"hole": "1"}}, ValueError, "loss: weights must be finite"),
        (FitOptions, {"loss": {"hole": 0, "nll": 0}}, ValueError, "loss: weights must not all"),
        (FitOptions, {"loss": {"nll": 1}}, ValueError, "loss: every term that trains the infilled"),
        (FitOptions, {"uncertainty": "yes"}, TypeError, "uncertainty: expected True or False"),
        (FitOptions, {"log_every": 0}, ValueError, "log_every: expected an integer >= 1"),
        (FitOptions, {"deterministic": None}, TypeError, "deterministic: expected True"),
        (FitOptions, {"resume": 3}, TypeError, "resume: expected a path"),
        (FitOptions, {"architecture": {"depth": 0}}, ValueError, "architecture: expected"),
        (FitOptions, {"architecture": {"normalization": "x"}}, ValueError, "architecture:"),
    ],
)
def test_options_check_themselves(options, kwargs, error, message):
    with pytest.raises(error, match=re.escape(message)):
        options(**kwargs)


def test_options_normalise_and_are_frozen():
    options = InfillOptions(time_context=[3, 1], batch_size=8)
    assert options.time_context == (3, 1)
    assert options.engine() == dict(device="auto", batch_size=8, tile_size=None,
                                    precision="fp32", compile=False, threads="auto")  # fmt: skip
    with pytest.raises(FrozenInstanceError):
        options.batch_size = 4  # type: ignore[misc]
    fit = FitOptions(loss={"hole": 1})
    assert fit.loss == LossWeights(valid=0, hole=1, tv=0) and fit.time_context == (0, 0)
    assert FitOptions(loss=fit.loss) == fit  # normalising twice changes nothing


def test_add_options_makes_switches_of_booleans():
    parser = argparse.ArgumentParser()
    add_options(parser, FitOptions)
    assert parser.parse_args(["--no-deterministic"]).deterministic is False
    assert parser.parse_args(["--distributed"]).distributed is True
    with pytest.raises(SystemExit):
        parser.parse_args(["--iterations", "0"])


def test_the_engine_options_are_one_typed_record():
    """``run`` receives a typed EngineOptions, whose fields are exactly the InfillOptions
    marked for the engine; ``predict``'s keywords are those fields, and no others."""
    from dataclasses import fields as dataclass_fields

    from xcrai.engine import EngineOptions, predict

    marked = {f.name for f in fields(InfillOptions) if f.metadata["engine"]}
    assert {f.name for f in dataclass_fields(EngineOptions)} == marked
    options = InfillOptions(batch_size=8, precision="bf16")
    engine = EngineOptions(**options.engine())
    assert (engine.batch_size, engine.precision, engine.threads) == (8, "bf16", "auto")
    with pytest.raises(TypeError, match="batch"):
        predict(None, None, None, batchsize=8)  # type: ignore[arg-type]


@pytest.mark.parametrize("verb", ["infill", "fit"])
def test_dataset_verbs_take_their_options_from_the_dataarray_verbs(verb, hadcrut):
    """Each verb's options are defined once, on the DataArray accessor: the Dataset's
    signature holds the very same parameters (types and defaults), and a call binds to it
    (an unknown or misspelt keyword is refused by name, as for any function)."""
    array = {p.name: p for p in _parameters(xr.DataArray, verb)}
    dataset = {p.name: p for p in _parameters(xr.Dataset, verb)}
    shared = [f.name for f in fields(OPTIONS[verb])]
    assert all(dataset[name] == array[name] for name in shared)
    with pytest.raises(TypeError, match="'pading'"):
        getattr(hadcrut.crai, verb)(None, pading="zeros")
