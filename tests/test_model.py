"""CraiModel's Jupyter display."""

from __future__ import annotations

from dataclasses import replace

import xcrai


def test_html_card_of_the_demo_model(demo_model):
    page = xcrai.load_model("crai-20crtasgn72")._repr_html_()
    assert page.startswith("<table>") and page.endswith("</table>")
    for label in (
        "architecture",
        "training data",
        "variable",
        "units",
        "grid",
        "padding",
        "time context",
        "normalisation",
        "provenance",
        "skill",
    ):
        assert f">{label}</th>" in page
    assert "20CR" in page and ">global<" in page and ">tas<" in page and "72x72" in page
    assert "RMSE on hidden points 1.13 K" in page  # the registry card's skill


def test_html_escapes_and_reports_the_last_validation_losses(demo_model):
    history = [
        {"iteration": 10, "train_loss": 0.9, "val_loss": 0.75, "val_hole_rmse": 1.5},
        {"iteration": 20, "train_loss": 0.8, "val_loss": 0.5, "val_hole_rmse": 1.25},
    ]
    config = replace(
        demo_model.config,
        variable="<script>x</script>",
        units="K",
        mean=1.5,
        std=2.0,
        provenance={
            "source": "xcrai fit",
            "data_dims": ["time", "lat", "lon"],
            "data_shape": [18, 72, 72],
            "iterations": 20,
            "history": history,
        },
    )
    page = xcrai.CraiModel(config, demo_model.net.state_dict())._repr_html_()
    assert "<script>" not in page and "&lt;script&gt;x&lt;/script&gt;" in page
    assert "iteration 20: validation loss 0.5, hole RMSE 1.25 K" in page
    assert "(x - 1.5) / 2" in page
    assert "xcrai fit on (time: 18, lat: 72, lon: 72), 20 iterations" in page
