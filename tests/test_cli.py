"""The command line and the built-in demo."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from nncabac import cli, demo


def test_demo_reports_consistent_figures(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["demo", "--rows", "64", "--cols", "128", "--seed", "3"]) == 0
    out = capsys.readouterr().out
    assert "bits/weight" in out and "decoded exactly         True" in out
    report = demo.run((64, 128), 0.55, 3)
    assert report.num_weights == 64 * 128
    # An adaptive coder lands near the order-0 entropy of i.i.d. levels, never far above it.
    assert 0.9 * report.entropy_bits < report.bits_per_weight < 1.1 * report.entropy_bits


def test_default_levels_are_about_sixty_percent_zeros() -> None:
    levels = demo.laplacian_levels((256, 256))
    assert 0.57 < float(np.mean(levels == 0)) < 0.63


def test_order0_entropy() -> None:
    assert demo.order0_entropy(np.zeros(10, np.int32)) == 0.0
    assert demo.order0_entropy(np.array([0, 1, 2, 3], np.int32)) == pytest.approx(2.0)
    assert demo.order0_entropy(np.zeros(0, np.int32)) == 0.0


def test_module_entry_point_and_bad_arguments() -> None:
    ok = subprocess.run(
        [sys.executable, "-m", "nncabac", "demo", "--rows", "8", "--cols", "8"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ok.returncode == 0, ok.stderr
    bad = subprocess.run(
        [sys.executable, "-m", "nncabac", "demo", "--rows", "x"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2 and "invalid int value" in bad.stderr
