"""The API reference (docs/api.md) is generated from the docstrings and must not go stale."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import nncabac

ROOT = Path(__file__).resolve().parent.parent


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "gen_api_docs", ROOT / "tools" / "gen_api_docs.py"
    )
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["gen_api_docs"] = mod
    spec.loader.exec_module(mod)
    return mod


def test_api_reference_is_up_to_date() -> None:
    gen = _generator()
    committed = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
    if committed != gen.render():
        raise AssertionError(
            "docs/api.md is out of date with the docstrings: run `python tools/gen_api_docs.py` "
            "and commit docs/api.md (`python tools/gen_api_docs.py --check` shows the diff)"
        )


def test_every_public_module_and_name_is_documented() -> None:
    text = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
    package = Path(nncabac.__file__).parent
    modules = [p.stem for p in package.glob("*.py") if not p.name.startswith("_")]
    assert len(modules) >= 10
    for m in modules:
        assert f"## `nncabac.{m}`" in text, m
    for name in nncabac.__all__:
        assert f"`nncabac.{name}" in text or f"[`{name}`]" in text, name


def test_readme_results_table_is_up_to_date() -> None:
    spec = importlib.util.spec_from_file_location("bench_report", ROOT / "benches" / "report.py")
    assert spec is not None and spec.loader is not None
    report = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(report)
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split(report.START, 1)[1].split(report.END, 1)[0]
    if section.strip() != report.render(report.collect()).strip():
        raise AssertionError(
            "README's results table is out of date with benches/results/*.md: run "
            "`python benches/report.py` and commit README.md"
        )


def test_hostile_inputs_table_is_up_to_date() -> None:
    """docs/hostile-inputs.md says how each hostile input is refused; a run of its generator
    must give the same inputs, expectations and results (times and memory vary)."""
    import subprocess

    script = ROOT / "benches" / "hostile_table.py"
    r = subprocess.run(
        [sys.executable, str(script), "--check"], capture_output=True, text=True, timeout=600
    )
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
