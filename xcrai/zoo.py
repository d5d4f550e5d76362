"""Named models and their cards: the bundled CRAI demo model and models published at a URL.

A registry entry is a :class:`ModelCard`: plain data saying where the weights are, their
sha256, what they were trained on (variable, units, grid, data and period), licence,
citation, skill on a named test, and what a CRAI checkpoint cannot say itself (padding,
time context). ``xcrai.load_model(name)`` takes a name as well as a path; remote files
are downloaded once, checked against their hash, and cached (``XCRAI_CACHE`` or the user
cache folder). A registered file loaded by its path gets its card's options too.

Examples
--------
>>> import xcrai
>>> model = xcrai.load_model("crai-20crtasgn72")  # bundled, no download
>>> print(xcrai.zoo.REGISTRY["crai-20crtasgn72"].describe())  # doctest: +SKIP
>>> xcrai.zoo.register("my-tas", url="https://example.org/tas.pth",
...                    sha256="...", padding="global")  # doctest: +SKIP
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import xcrai.data as data
from xcrai.files import first_line


@dataclass(frozen=True)
class Skill:
    """How well a model infills on a named, reproducible test.

    Attributes
    ----------
    test : str
        What was hidden and where the truth comes from, precisely enough to rerun.
    metric : str
        e.g. ``"RMSE on hidden points"``.
    value : float
    units : str
    baseline : str
        The same metric for a trivial infill (e.g. zero anomaly), for scale.
    """

    test: str
    metric: str
    value: float
    units: str = ""
    baseline: str = ""

    def __str__(self) -> str:
        text = f"{self.metric} {self.value:g} {self.units}".rstrip()
        return (
            f"{text} ({self.baseline}) on {self.test}"
            if self.baseline
            else f"{text} on {self.test}"
        )


@dataclass(frozen=True)
class ModelCard:
    """One named model: where its file is and what it is (a row of ``xcrai models``).

    Attributes
    ----------
    name : str
    description : str
    sha256 : str or None
        Hash of the file; required for downloads.
    url : str or None
        Where to download it; None for bundled files.
    path : Path or None
        A bundled (local) file.
    variable, units : str or None
        What the model infills (e.g. ``"tas"``, ``"K"``).
    grid_shape : (int, int) or None
        ``(nlat, nlon)`` of the training grid.
    padding : {"zeros", "global", "auto"} or None
        Padding the model was trained with; the default when it is loaded.
    time_context : (int, int) or None
        Past and future steps stacked as channels, for CRAI checkpoints with several.
    training_data, period : str or None
        The data the model learnt from and its time span; None where not recorded.
    licence, citation : str or None
    skill : Skill or None
        Skill on a named test; None where not measured.
    """

    name: str
    description: str = ""
    sha256: str | None = None
    url: str | None = None
    path: Path | None = None
    variable: str | None = None
    units: str | None = None
    grid_shape: tuple[int, int] | None = None
    padding: str | None = None
    time_context: tuple[int, int] | None = None
    training_data: str | None = None
    period: str | None = None
    licence: str | None = None
    citation: str | None = None
    skill: Skill | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    #: other names it is found by (the bundled demo: its file's name, ``20crtasgn72``)
    aliases: tuple[str, ...] = ()

    @property
    def options(self) -> dict[str, Any]:
        """What :func:`xcrai.load_model` takes from the card: ``padding``,
        ``time_context``, ``variable``, ``units`` and ``grid`` (``{"shape": [nlat, nlon]}``,
        as ``ModelConfig.grid``), those that are known."""
        options: dict[str, Any] = {
            "padding": self.padding,
            "time_context": self.time_context,
            "variable": self.variable,
            "units": self.units,
            "grid": None if self.grid_shape is None else {"shape": list(self.grid_shape)},
        }
        return {key: value for key, value in options.items() if value is not None}

    @property
    def where(self) -> str:
        """The word "bundled", or the download URL."""
        return "bundled" if self.path is not None else str(self.url)

    def describe(self) -> str:
        """The card as text, one ``field: value`` per line (``xcrai models NAME``)."""
        rows: list[tuple[str, Any]] = [
            ("name", self.name),
            *([("also named", ", ".join(self.aliases))] if self.aliases else []),
            ("description", self.description),
            ("file", self.where),
            ("sha256", self.sha256),
            ("variable", self.variable),
            ("units", self.units),
            ("grid", _shape(self.grid_shape)),
            ("padding", self.padding),
            ("time context", self.time_context),
            ("training data", self.training_data),
            ("period", self.period),
            ("licence", self.licence),
            ("citation", self.citation),
            ("skill", self.skill),
            *self.extra.items(),
        ]
        return "\n".join(f"{key:>13}: {'not recorded' if v is None else v}" for key, v in rows)


#: older name of :class:`ModelCard`
ModelEntry = ModelCard

#: sha256 of the bundled ``20crtasgn72.pth``
DEMO_SHA256 = "792241d015aea5c407553b6b77e4932783716b374802ce835f3918382687b47b"

#: the named test behind the demo card's skill; ``tests/test_zoo.py`` recomputes the figure
DEMO_SKILL_TEST = (
    "HadCRUT4 1893-08 (xcrai.data.hadcrut4_sample) reduced to the 1877-09 coverage "
    "(xcrai.data.hadcrut4_mask): the 696 cells observed in 1893-08 that the 1877-09 coverage "
    "hides are scored against their observed values"
)


def _builtin() -> dict[str, ModelCard]:
    return {
        "crai-20crtasgn72": ModelCard(
            name="crai-20crtasgn72",
            description="CRAI's demo model: near-surface temperature anomalies on the HadCRUT4 "
            "72x72 grid, global padding",
            sha256=DEMO_SHA256,
            path=data.demo_model(),
            variable="tas",
            units="K",
            grid_shape=(72, 72),
            padding="global",
            time_context=(0, 0),
            training_data="20CR (Twentieth Century Reanalysis) near-surface temperature "
            "anomalies on the HadCRUT4 72x72 grid; 1,000,000 iterations",
            period=None,  # the checkpoint does not record it
            aliases=("20crtasgn72",),  # the file's name, as CRAI's README and history lines say
            licence="BSD-3-Clause (CRAI)",
            citation="Kadow, Hall and Ulbrich (2020), Artificial intelligence reconstructs "
            "missing climate information, Nature Geoscience, doi:10.1038/s41561-020-0582-5",
            skill=Skill(
                test=DEMO_SKILL_TEST,
                metric="RMSE on hidden points",
                value=1.130,
                units="K",
                baseline="zero anomaly: 1.11 K",
            ),
        )
    }


class Registry:
    """Named models; the module-level :data:`REGISTRY` is the one ``load_model`` uses."""

    def __init__(self) -> None:
        self._entries = _builtin()

    def names(self) -> list[str]:
        return sorted(self._entries)

    def entries(self) -> list[ModelCard]:
        return [self._entries[n] for n in self.names()]

    def _resolve(self, name: object) -> str | None:
        """The registered name that ``name`` is, or is an alias of; None if neither."""
        if name in self._entries:
            return str(name)
        return next((n for n, e in self._entries.items() if name in e.aliases), None)

    def __contains__(self, name: object) -> bool:
        return self._resolve(name) is not None

    def __getitem__(self, name: str) -> ModelCard:
        """The card of model ``name`` (or of the model it is an alias of), or a KeyError
        listing the registered names."""
        found = self._resolve(name)
        if found is None:
            raise KeyError(f"no registered model {name!r}; registered: {self.names()}")
        return self._entries[found]

    def find_sha256(self, sha256: str) -> ModelCard | None:
        """The card of the file with this sha256, if one is registered."""
        return next((e for e in self._entries.values() if e.sha256 == sha256), None)

    def register(
        self,
        name: str,
        *,
        url: str,
        sha256: str,
        description: str = "",
        padding: str | None = None,
        time_context: tuple[int, int] | None = None,
        **card: Any,
    ) -> ModelCard:
        """Add a model published at ``url``.

        Parameters
        ----------
        name : str
        url : str
            Where to download the file.
        sha256 : str
            Its hash (64 hexadecimal characters), checked after every download.
        description : str
        padding, time_context : optional
            Defaults for :func:`xcrai.load_model`.
        **card
            Further :class:`ModelCard` fields: ``variable``, ``units``, ``grid_shape``,
            ``training_data``, ``period``, ``licence``, ``citation``, ``skill``.

        Returns
        -------
        ModelCard

        Examples
        --------
        >>> xcrai.zoo.register("my-tas", url="https://example.org/tas.pth", sha256="...",
        ...                    padding="global", variable="tas", units="K")  # doctest: +SKIP
        """
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
            raise ValueError(  # it becomes part of the cached file's name
                f"name: expected letters, digits, '.', '_' or '-' (not first), got {name!r}"
            )
        if any(name == n or name in e.aliases for n, e in _builtin().items()):
            raise ValueError(f"name: {name!r} is bundled with xcrai; register under another")
        if not isinstance(url, str) or "://" not in url:
            raise ValueError(f"url: expected a URL such as https://..., got {url!r}")
        if not isinstance(sha256, str) or not re.fullmatch(r"[0-9a-fA-F]{64}", sha256):
            raise ValueError(f"sha256: expected 64 hexadecimal characters, got {sha256!r}")
        allowed = {f.name for f in fields(ModelCard)} - {"name", "url", "sha256", "path"}
        unknown = sorted(set(card) - allowed)
        if unknown:
            raise TypeError(f"register: unknown card field(s) {unknown}; known: {sorted(allowed)}")
        if card.get("grid_shape") is not None:
            card["grid_shape"] = tuple(int(n) for n in card["grid_shape"])
        entry = ModelCard(
            name=name,
            description=description,
            sha256=sha256.lower(),
            url=url,
            padding=padding,
            time_context=None if time_context is None else (time_context[0], time_context[1]),
            **card,
        )
        self._entries[name] = entry
        return entry

    def unregister(self, name: str) -> None:
        """Remove a registered model (bundled ones cannot be removed)."""
        if name in _builtin():
            raise ValueError(f"name: {name!r} is bundled with xcrai and cannot be removed")
        self._entries.pop(name, None)

    def fetch(self, name: str, *, progress: bool = False) -> tuple[Path, dict[str, Any]]:
        """Local path of model ``name`` (downloading and checking it if needed) and its
        load options (:attr:`ModelCard.options`)."""
        if name not in self:
            raise ValueError(
                f"model: {name!r} is neither a file nor a registered model name; "
                f"registered: {self.names()}"
            )
        entry = self[name]
        if entry.path is not None:
            return entry.path, entry.options
        pooch = _pooch()

        assert entry.url is not None and entry.sha256 is not None  # register checks both
        try:
            path = pooch.retrieve(
                entry.url,
                known_hash=f"sha256:{entry.sha256}",
                fname=f"{entry.name}-{entry.sha256[:12]}.pth",
                path=cache_dir(),
                progressbar=progress,
            )
        except OSError as error:  # requests' errors are OSErrors too; a hash mismatch is not
            raise OSError(
                f"model: downloading {name!r} from {entry.url} into {str(cache_dir())!r} "
                f"(XCRAI_CACHE) failed: {type(error).__name__}: {first_line(error, '')}"
            ) from error
        return Path(path), entry.options


def _shape(shape: Sequence[int] | None) -> str | None:
    return None if shape is None else "x".join(str(n) for n in shape)


def format_table(cards: Sequence[ModelCard]) -> str:
    """The cards as a plain-text table, one model a row (``xcrai models``).

    Examples
    --------
    >>> print(format_table(REGISTRY.entries()))  # doctest: +SKIP
    """
    header = ("name", "variable", "units", "grid", "padding", "licence", "file")
    rows = [header] + [
        tuple(
            "-" if value is None else str(value)
            for value in (
                card.name,
                card.variable,
                card.units,
                _shape(card.grid_shape),
                card.padding,
                card.licence,
                card.where,
            )
        )
        for card in cards
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def cache_dir() -> Path:
    """Where downloaded models are kept: ``$XCRAI_CACHE`` or the user cache folder."""
    return Path(os.environ.get("XCRAI_CACHE") or _pooch().os_cache("xcrai"))


def _pooch() -> Any:
    """pooch, imported without the warning its import of ``tqdm.auto`` gives in a notebook
    without ipywidgets ("IProgress not found"), pointing at tqdm's file: xcrai's downloads
    show no bar."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="IProgress not found")
        import pooch
    return pooch


REGISTRY = Registry()
register = REGISTRY.register
