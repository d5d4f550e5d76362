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
    with pytest.raises(FileNotFoundError, match="no registered model of that name"):
        xcrai.load_model("no-such-model")
