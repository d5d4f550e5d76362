"""xcrai.train.loop: which progress bar training shows."""

from __future__ import annotations

import importlib.util
import warnings

import tqdm.auto
import tqdm.std

from xcrai.observer import progress_bar_class


def test_text_bar_without_ipywidgets_and_no_iprogress_warning(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "ipywidgets" else real(name, *a),
    )
    bar_class = progress_bar_class()
    assert bar_class is tqdm.std.tqdm
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # TqdmWarning("IProgress not found") would fail here
        bar_class(total=2, disable=True).close()


def test_auto_bar_when_ipywidgets_can_draw_it(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: object() if name == "ipywidgets" else real(name, *a),
    )
    assert progress_bar_class() is tqdm.auto.tqdm
