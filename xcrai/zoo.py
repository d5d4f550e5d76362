"""Named models: the bundled CRAI demo model and models published at a URL (via pooch).

A registry entry says where the weights are, their sha256, and what a CRAI checkpoint
cannot say itself (padding, time context). ``xcrai.load_model(name)`` takes a name as
well as a path; remote files are downloaded once, checked against their hash, and
cached (``XCRAI_CACHE`` or the user cache folder).

Examples
--------
>>> import xcrai
>>> model = xcrai.load_model("crai-20crtasgn72")  # bundled, no download
>>> xcrai.zoo.register("my-tas", url="https://example.org/tas.pth",
...                    sha256="...", padding="global")  # doctest: +SKIP
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xcrai import data


@dataclass(frozen=True)
class ModelEntry:
    """One named model.

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
    options : dict
        What the checkpoint cannot say itself: ``padding`` and ``time_context`` (defaults
        for :func:`xcrai.load_model` by name), and ``grid``, the training grid
        (``{"shape": [nlat, nlon]}``, as ``ModelConfig.grid``), given to the model however
        the file is loaded (by name, or by a path to a file with this ``sha256``).
    """

    name: str
    description: str
    sha256: str | None = None
    url: str | None = None
    path: Path | None = None
    options: dict[str, Any] = field(default_factory=dict)


#: sha256 of the bundled ``20crtasgn72.pth``
DEMO_SHA256 = "792241d015aea5c407553b6b77e4932783716b374802ce835f3918382687b47b"


def _builtin() -> dict[str, ModelEntry]:
    return {
        "crai-20crtasgn72": ModelEntry(
            name="crai-20crtasgn72",
            description="CRAI's demo model: 20CR near-surface temperature anomalies, HadCRUT4 "
            "72x72 grid, global padding (Kadow et al. 2020; BSD-3-Clause)",
            sha256=DEMO_SHA256,
            path=data.demo_model(),
            options={"padding": "global", "grid": {"shape": [72, 72]}},
        )
    }


class Registry:
    """Named models; the module-level :data:`REGISTRY` is the one ``load_model`` uses."""

    def __init__(self) -> None:
        self._entries = _builtin()

    def names(self) -> list[str]:
        return sorted(self._entries)

    def entries(self) -> list[ModelEntry]:
        return [self._entries[n] for n in self.names()]

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def find_sha256(self, sha256: str) -> ModelEntry | None:
        """The entry of the file with this sha256, if one is registered."""
        return next((e for e in self._entries.values() if e.sha256 == sha256), None)

    def register(
        self, name: str, *, url: str, sha256: str, description: str = "", **options: Any
    ) -> ModelEntry:
        """Add a model published at ``url``; ``options`` go to :func:`xcrai.load_model`."""
        if not name or not isinstance(name, str):
            raise ValueError(f"name: expected a non-empty string, got {name!r}")
        if not isinstance(url, str) or "://" not in url:
            raise ValueError(f"url: expected a URL such as https://..., got {url!r}")
        if not isinstance(sha256, str) or len(sha256) != 64:
            raise ValueError(f"sha256: expected 64 hexadecimal characters, got {sha256!r}")
        entry = ModelEntry(name, description, sha256.lower(), url, None, dict(options))
        self._entries[name] = entry
        return entry

    def unregister(self, name: str) -> None:
        """Remove a registered model (bundled ones cannot be removed)."""
        if name in _builtin():
            raise ValueError(f"name: {name!r} is bundled with xcrai and cannot be removed")
        self._entries.pop(name, None)

    def fetch(self, name: str, *, progress: bool = False) -> tuple[Path, dict[str, Any]]:
        """Local path of model ``name`` (downloading and checking it if needed) and its
        load options."""
        if name not in self._entries:
            raise ValueError(
                f"model: {name!r} is neither a file nor a registered model name; "
                f"registered: {self.names()}"
            )
        entry = self._entries[name]
        if entry.path is not None:
            return entry.path, dict(entry.options)
        import pooch

        path = pooch.retrieve(
            entry.url,
            known_hash=f"sha256:{entry.sha256}",
            fname=f"{entry.name}-{entry.sha256[:12]}.pth",
            path=cache_dir(),
            progressbar=progress,
        )
        return Path(path), dict(entry.options)


def cache_dir() -> Path:
    """Where downloaded models are kept: ``$XCRAI_CACHE`` or the user cache folder."""
    import pooch

    return Path(os.environ.get("XCRAI_CACHE") or pooch.os_cache("xcrai"))


REGISTRY = Registry()
register = REGISTRY.register
