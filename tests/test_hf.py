"""Hugging Face folders: compress a saved model folder, restore it, load it with transformers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import nncabac

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")


def test_transformers_loads_the_restored_folder_unchanged(tmp_path: Path) -> None:
    os.environ["HF_HUB_OFFLINE"] = "1"
    cfg = transformers.GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=120, n_positions=16)
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(cfg).eval()
    model.save_pretrained(tmp_path / "orig")
    (tmp_path / "orig" / "README.md").write_text("model card")

    report = nncabac.compress_folder(tmp_path / "orig", tmp_path / "small", qp=-44)
    files = sorted(os.listdir(tmp_path / "small"))
    assert "model.nncabac" in files and "config.json" in files and "README.md" in files
    assert not any(f.endswith(".safetensors") for f in files)
    assert report.file_bytes < 0.4 * report.original_bytes

    nncabac.restore_folder(tmp_path / "small", tmp_path / "restored")
    back = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "restored").eval()
    ids = torch.randint(0, 120, (2, 12))
    with torch.no_grad():
        a, b = model(ids).logits, back(ids).logits
    assert back.lm_head.weight.data_ptr() == back.transformer.wte.weight.data_ptr()  # tied
    assert torch.allclose(a, b, atol=0.05)
    assert (a.argmax(-1) == b.argmax(-1)).float().mean() > 0.9


def test_import_does_not_pull_in_transformers_or_torch() -> None:
    code = "import sys, nncabac; print('transformers' in sys.modules, 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
