"""xcrai.zoo: named models, downloads through a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import hashlib
import http.server
import threading
from functools import partial

import pytest
from conftest import DATA

import xcrai
from xcrai.zoo import REGISTRY, Registry


@pytest.fixture
def server():
    """Serves tests/data on 127.0.0.1 and counts the requests."""
    requests = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            requests.append(self.path)

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=str(DATA)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", requests
    httpd.shutdown()
    httpd.server_close()


SHA = hashlib.sha256((DATA / "minimum-1.inp.pth").read_bytes()).hexdigest()


def test_bundled_model_by_name():
    model = xcrai.load_model("crai-20crtasgn72")
    assert model.config.padding == "global"
    assert model.sha256 == xcrai.load_model(xcrai.data.demo_model()).sha256
    assert "crai-20crtasgn72" in REGISTRY.names()


def test_the_registry_knows_the_demo_models_training_grid_by_name_and_by_hash():
    """A CRAI checkpoint does not record its grid; the registry entry does, and the bundled
    file is recognised by its sha256 however it is loaded."""
    path = xcrai.data.demo_model()
    assert REGISTRY.find_sha256(hashlib.sha256(path.read_bytes()).hexdigest()) is not None
    for source in ("crai-20crtasgn72", path, str(path)):
        assert xcrai.load_model(source).config.grid == {"shape": [72, 72]}
    assert xcrai.load_model(DATA / "minimum-1.inp.pth").config.grid is None


def test_download_once_checked_and_cached(server, tmp_path, monkeypatch):
    url, requests = server
    monkeypatch.setenv("XCRAI_CACHE", str(tmp_path / "cache"))
    registry = Registry()
    registry.register("minimum", url=f"{url}/minimum-1.inp.pth", sha256=SHA, padding="zeros")
    path, options = registry.fetch("minimum")
    assert options == {"padding": "zeros"}
    assert hashlib.sha256(path.read_bytes()).hexdigest() == SHA
    again, _ = registry.fetch("minimum")
    assert again == path and len([r for r in requests if "minimum" in r]) == 1


def test_a_wrong_hash_leaves_nothing(server, tmp_path, monkeypatch):
    url, _ = server
    monkeypatch.setenv("XCRAI_CACHE", str(tmp_path / "cache"))
    registry = Registry()
    registry.register("bad", url=f"{url}/minimum-1.inp.pth", sha256="0" * 64)
    with pytest.raises(ValueError, match=r"(?i)hash"):
        registry.fetch("bad")
    assert not any(p.suffix == ".pth" for p in (tmp_path / "cache").rglob("*"))


def test_a_failed_download_names_the_model(server, tmp_path, monkeypatch):
    url, _ = server
    monkeypatch.setenv("XCRAI_CACHE", str(tmp_path / "cache"))
    registry = Registry()
    registry.register("gone", url=f"{url}/no-such-file.pth", sha256=SHA)  # a real 404
    with pytest.raises(OSError, match=r"model: downloading 'gone' from http.* failed: HTTP"):
        registry.fetch("gone")
    assert not any(p.suffix == ".pth" for p in (tmp_path / "cache").rglob("*"))


def test_load_model_and_infill_by_registered_name(server, tmp_path, monkeypatch, hadcrut):
    url, _ = server
    monkeypatch.setenv("XCRAI_CACHE", str(tmp_path / "cache"))
    REGISTRY.register("test-minimum", url=f"{url}/minimum-1.inp.pth", sha256=SHA,
                      padding="zeros")  # fmt: skip
    try:
        model = xcrai.load_model("test-minimum")
        assert model.config.padding == "zeros"
        filled = hadcrut.tas.crai.infill("test-minimum")
        assert "padding zeros" in filled.attrs["history"]
    finally:
        REGISTRY.unregister("test-minimum")


def test_bad_registrations_and_names():
    registry = Registry()
    with pytest.raises(ValueError, match="url: expected a URL"):
        registry.register("x", url="minimum.pth", sha256=SHA)
    with pytest.raises(ValueError, match="sha256: expected 64"):
        registry.register("x", url="http://127.0.0.1/x.pth", sha256="abc")
    with pytest.raises(ValueError, match="sha256: expected 64 hexadecimal"):
        registry.register("x", url="http://127.0.0.1/x.pth", sha256="z" * 64)
    # the name becomes part of the cached file's name: no way out of the cache
    with pytest.raises(ValueError, match="name: expected letters, digits"):
        registry.register("../../evil", url="http://127.0.0.1/x.pth", sha256=SHA)
    with pytest.raises(ValueError, match="is bundled with xcrai; register under another"):
        registry.register("crai-20crtasgn72", url="http://127.0.0.1/x.pth", sha256=SHA)
    with pytest.raises(FileNotFoundError, match="no registered model of that name"):
        xcrai.load_model("no-such-model")


def test_cards_are_data_and_give_load_options():
    card = REGISTRY["crai-20crtasgn72"]
    assert (card.variable, card.units, card.grid_shape, card.padding) == (
        "tas",
        "K",
        (72, 72),
        "global",
    )
    assert card.licence and "doi:10.1038/s41561-020-0582-5" in card.citation
    assert card.options == {
        "padding": "global",
        "time_context": (0, 0),
        "variable": "tas",
        "units": "K",
        "grid": {"shape": [72, 72]},
    }
    text = card.describe()
    for field in ("sha256", "training data", "period", "licence", "citation", "skill"):
        assert f"{field}: " in text
    with pytest.raises(KeyError, match="registered"):
        REGISTRY["nope"]
    with pytest.raises(TypeError, match="unknown card field"):
        Registry().register("x", url="http://127.0.0.1/x.pth", sha256=SHA, colour="red")


def test_the_demo_card_reaches_the_model_by_name_and_by_path():
    for source in ("crai-20crtasgn72", xcrai.data.demo_model()):
        config = xcrai.load_model(source).config
        assert (config.variable, config.units, config.grid) == ("tas", "K", {"shape": [72, 72]})
    assert xcrai.load_model("crai-20crtasgn72").config.padding == "global"
    # by path the padding stays "auto" (global on the model's own 72x72 grid, zeros on a crop)
    assert xcrai.load_model(xcrai.data.demo_model()).config.padding == "auto"


def test_file_sha256_matches_hashlib():
    from xcrai.checkpoint import file_sha256

    path = DATA / "minimum-1.inp.pth"
    assert file_sha256(path) == SHA


def test_xcrai_models_prints_the_table_and_one_card_without_downloading(capsys, monkeypatch):
    import pooch

    from xcrai.cli import main

    def no_download(*args, **kwargs):
        raise AssertionError("xcrai models downloaded a file")

    monkeypatch.setattr(pooch, "retrieve", no_download)
    REGISTRY.register(
        "test-remote",
        url="http://127.0.0.1:9/x.pth",
        sha256=SHA,
        variable="zg",
        units="m",
        grid_shape=[73, 144],
        licence="CC-BY-4.0",
    )
    try:
        assert main(["models"]) == 0
        lines = capsys.readouterr().out.splitlines()
        assert lines[0].split() == [
            "name",
            "variable",
            "units",
            "grid",
            "padding",
            "licence",
            "file",
        ]
        assert lines[1].split()[:4] == ["crai-20crtasgn72", "tas", "K", "72x72"]
        assert lines[2].split() == [
            "test-remote",
            "zg",
            "m",
            "73x144",
            "-",
            "CC-BY-4.0",
            "http://127.0.0.1:9/x.pth",
        ]
        assert main(["models", "test-remote"]) == 0
        card = capsys.readouterr().out
        assert f"sha256: {SHA}" in card and "licence: CC-BY-4.0" in card
        assert "skill: not recorded" in card
    finally:
        REGISTRY.unregister("test-remote")
    assert main(["models", "nope"]) == 2
    assert "no registered model 'nope'" in capsys.readouterr().err


def test_the_demo_cards_skill_is_reproducible():
    """The card's figure: HadCRUT4 1893-08 reduced to the 1877-09 coverage, RMSE on the
    cells observed in 1893-08 but hidden, against the truth; and zero anomaly for scale."""
    import numpy as np
    import xarray as xr

    skill = REGISTRY["crai-20crtasgn72"].skill
    with (
        xr.open_dataset(xcrai.data.hadcrut4_sample()) as ds,
        xr.open_dataset(xcrai.data.hadcrut4_mask()) as masks,
    ):
        truth = ds.tas.isel(time=1).load()
        coverage = masks.tas.isel(time=0, drop=True).load()
    hidden = truth.notnull() & (coverage != 1)
    assert int(hidden.sum()) == 696 and "696 cells" in skill.test
    test = truth.where(coverage == 1).expand_dims("time")
    with pytest.warns(xcrai.UnreachableWarning):
        filled = test.crai.infill("crai-20crtasgn72").isel(time=0)
    rmse = float(np.sqrt(((filled - truth) ** 2).where(hidden).mean()))
    zero = float(np.sqrt((truth**2).where(hidden).mean()))
    assert abs(rmse - skill.value) < 5e-4
    assert f"zero anomaly: {zero:.2f} K" == skill.baseline


def test_one_name_per_model_and_a_card_for_any_model_file(capsys, tmp_path, hadcrut):
    """The demo model answers to its registered name and to its file's name (the name
    CRAI's README and every history line give), everywhere; ``xcrai models FILE`` prints the
    card of any model file, a fitted one's with its iteration as a whole number and its
    file's sha256 (in Python too, as soon as it is saved)."""
    from xcrai.checkpoint import file_sha256
    from xcrai.cli import main

    assert REGISTRY["20crtasgn72"] is REGISTRY["crai-20crtasgn72"]
    assert xcrai.load_model("20crtasgn72").sha256 == xcrai.load_model("crai-20crtasgn72").sha256
    for name in ("20crtasgn72", "crai-20crtasgn72", str(xcrai.data.demo_model())):
        assert main(["models", name]) == 0
        card = capsys.readouterr().out
        assert "20crtasgn72" in card and "tas" in card, name
    assert main(["models", "20crtasgn72"]) == 0
    assert "also named: 20crtasgn72" in capsys.readouterr().out  # the card says which
    with pytest.raises(ValueError, match="bundled"):
        REGISTRY.register("20crtasgn72", url="https://example.org/x.pth", sha256="0" * 64)

    tas = hadcrut.tas.fillna(0.0)
    masks = hadcrut.tas.notnull()
    model = tas.crai.fit(masks, iterations=3, batch_size=1, validation=0.5, log_every=1,
                         architecture={"n_filters": 4, "depth": 2}, progress=False)  # fmt: skip
    assert "not saved (sha256 of its weights" in model.card
    path = model.save(tmp_path / "fitted.pth")
    assert f"sha256 {file_sha256(path)[:12]}" in model.card
    assert main(["models", str(path)]) == 0
    card = capsys.readouterr().out
    assert "iteration 3: validation loss" in card and "iteration 3.0" not in card
    assert f"sha256 {file_sha256(path)[:12]}" in card
    assert repr(model).count("\n") >= 3  # one subject a line, not one long line
