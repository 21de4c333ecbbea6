"""Progress bars: shown for long work on a real checkpoint, silent with verbose=False, never for the default."""
from __future__ import annotations

import pytest
import torch

import mistral_edu as me
from mistral_edu import progress
from mistral_edu.int8 import quantize_model


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """The embedded default's weights saved as an ordinary checkpoint (a folder that is not the default)."""
    model = me.load_model(device="cpu", verbose=False)
    return me.save_consolidated(model, tmp_path_factory.mktemp("weights"), dtype=torch.float32)


@pytest.fixture
def every_bar_shown(monkeypatch):
    """As if all work were long: bars appear at once instead of after SHOW_AFTER_S seconds."""
    monkeypatch.setattr(progress, "SHOW_AFTER_S", 0)


@pytest.mark.parametrize("strategy, what", [("full", "reading"), ("int8", "reading and quantising to int8")])
def test_loading_shows_bytes_read(folder, every_bar_shown, capsys, strategy, what):
    me.load_model(folder, device="cpu", strategy=strategy)
    err = capsys.readouterr().err
    assert f"{what} {folder.name}" in err and "B/s" in err, err   # bytes, with a rate and an ETA


def test_a_streamed_forward_shows_its_units(folder, every_bar_shown, capsys):
    model = me.load_model(folder, device="cpu", strategy="stream")
    capsys.readouterr()
    with torch.no_grad():
        model(torch.tensor([[1, 5, 9]]))
    err = capsys.readouterr().err
    assert "streamed forward" in err and f"/{model.cfg.n_layers + 3}" in err, err


def test_quantising_a_loaded_model_shows_the_matrices(folder, every_bar_shown, capsys):
    model = me.load_model(folder, device="cpu", verbose=False)
    quantize_model(model)
    assert "quantising to int8" in capsys.readouterr().err


def test_verbose_false_is_silent(folder, every_bar_shown, capsys):
    for strategy in ("full", "int8", "stream"):
        model = me.load_model(folder, device="cpu", strategy=strategy, verbose=False)
    with torch.no_grad():
        model(torch.tensor([[1, 5, 9]]))
    quantize_model(me.load_model(folder, device="cpu", verbose=False), verbose=False)
    assert capsys.readouterr().err == ""


def test_the_embedded_default_never_shows_a_bar(every_bar_shown, capsys):
    for strategy in ("full", "int8"):
        me.load_model(device="cpu", strategy=strategy)
    assert capsys.readouterr().err == ""


def test_short_work_shows_no_bar(folder, capsys):
    """At the real threshold, loading the small checkpoint (well under 2 s) prints no bar."""
    me.load_model(folder, device="cpu", strategy="int8")
    assert "reading" not in capsys.readouterr().err
