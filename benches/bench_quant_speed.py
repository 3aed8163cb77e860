"""Quantizer benchmark: single-thread throughput of nncabac's quantizers, side by side with the
NNC reference's ``quantLayer`` (NNCodec 2.1.3) on the same input when its virtualenv exists.

    .venv/bin/python benches/bench_quant_speed.py                # 100k and 1M weights, median of 7
    .venv/bin/python benches/bench_quant_speed.py --quick        # 100k weights, median of 5
    NNCODEC_PYTHON=/path/to/venv/bin/python .venv/bin/python benches/bench_quant_speed.py

Input: Laplacian float32 weights with standard deviation 0.028 (seed 0) quantized at qp −38,
qp_density 2 (Δ ≈ 0.00146; about 4 % zeros, the statistics of ``shared/vectors``' ``q_lap*``
vectors), max_num_no_rem 10. Quantizers: plain rounding (dq_flag 0, λ 0), RDOQ (dq_flag 0, λ 1),
trellis without rate (dq_flag 1, λ 0, NNCodec's default), trellis with rate model (dq_flag 1,
λ 1), and importance-weighted trellis (λ 1, random importance of mean 1; nncabac only). Each
timing is the median over ``--repeats`` rounds of one ``nncabac.nnc.quantize_layer`` call (one
layer, one thread); in each round the reference first quantizes the same input once per
quantizer in its own interpreter (``_reference_quant.py``), so that both see the same machine
load; its levels are compared with ours. Results are printed and written to
``benches/results/quant_speed.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from nncabac import nnc

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("NNCABAC_SHARED", ROOT.parent / "shared"))
QP, QP_DENSITY, MAX_NUM_NO_REM, SIGMA = -38, 2, 10, 0.028
TARGET = 5.0  # required speed-up over the reference for the trellis with rate model

# (key, label, dq_flag, lambda_scale, importance-weighted)
QUANTIZERS = [
    ("round", "plain rounding (dq 0, λ 0)", 0, 0.0, False),
    ("rdoq", "RDOQ (dq 0, λ 1)", 0, 1.0, False),
    ("trellis0", "trellis, no rate (dq 1, λ 0)", 1, 0.0, False),
    ("trellis1", "trellis + rate model (dq 1, λ 1)", 1, 1.0, False),
    ("trellis1_imp", "importance-weighted trellis (dq 1, λ 1)", 1, 1.0, True),
]


def build_info() -> str:
    """Which build of nncabac was timed: the commit of the working tree, and whether the
    installed extension is older than the latest commit or edit of the Rust sources."""
    import datetime

    from nncabac import _nncabac

    so = Path(_nncabac.__file__)
    built = datetime.datetime.fromtimestamp(so.stat().st_mtime, datetime.timezone.utc)
    info = f"extension built {built:%Y-%m-%d %H:%M} UTC"

    def git(*a: str) -> str:
        return subprocess.run(
            ["git", "-C", str(ROOT), *a], capture_output=True, text=True, check=True
        ).stdout.strip()

    try:
        rev = git("rev-parse", "--short", "HEAD")
        last = int(git("log", "-1", "--format=%ct", "--", "rust") or 0)
        dirty = git("status", "--porcelain", "rust")
    except (OSError, subprocess.CalledProcessError):
        return info
    info = f"commit {rev}, {info}"
    if last > so.stat().st_mtime:
        info += " (before the latest Rust commit: rebuild for current figures)"
    if dirty:
        info += " (Rust sources modified in the working tree)"
    return info


def laplacian_weights(n: int, seed: int = 0) -> np.ndarray:
    """Laplacian float32 weights of standard deviation SIGMA (scale SIGMA/√2)."""
    rng = np.random.default_rng(seed)
    return rng.laplace(0.0, SIGMA / np.sqrt(2.0), n).astype(np.float32)


def importance_for(n: int, seed: int = 1) -> np.ndarray:
    """Log-normal per-weight importance, normalised to mean 1."""
    imp = np.random.default_rng(seed).lognormal(0.0, 1.0, n)
    return (imp / imp.mean()).astype(np.float32)


def ours(w: np.ndarray, dq: int, lam: float, imp: np.ndarray | None) -> tuple[float, np.ndarray]:
    """Seconds and levels of one ``nnc.quantize_layer`` call."""
    t = time.perf_counter()
    levels, qp_used = nnc.quantize_layer(
        w,
        dq_flag=dq,
        qp=QP,
        qp_density=QP_DENSITY,
        lambda_scale=lam,
        max_num_no_rem=MAX_NUM_NO_REM,
        general_profile_idc=0,
        importance=imp,
    )
    secs = time.perf_counter() - t
    assert qp_used == QP
    return secs, levels


def reference(python: str, wpath: str, tmp: str) -> dict[str, tuple[float, np.ndarray]]:
    """Seconds and levels of one quantLayer call for every quantizer it has (one subprocess)."""
    tasks = [
        {
            "id": key,
            "dq_flag": dq,
            "qp": QP,
            "qp_density": QP_DENSITY,
            "lambda_scale": lam,
            "max_num_no_rem": MAX_NUM_NO_REM,
            "general_profile_idc": 0,
            "repeats": 1,
        }
        for key, _, dq, lam, imp in QUANTIZERS
        if not imp
    ]
    job = os.path.join(tmp, "job.json")
    Path(job).write_text(json.dumps({"weights": wpath, "out_dir": tmp, "tasks": tasks}))
    script = Path(__file__).with_name("_reference_quant.py")
    proc = subprocess.run(
        [python, str(script), str(SHARED / "tools"), job], capture_output=True, text=True
    )
    if proc.returncode:
        raise RuntimeError(f"reference quantizer failed:\n{proc.stderr[-3000:]}")
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    out = {}
    for t in tasks:
        assert res[t["id"]]["qp_used"]["w"] == QP
        with np.load(os.path.join(tmp, t["id"] + ".npz")) as z:
            out[t["id"]] = (res[t["id"]]["seconds"]["w"], z["w"])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="100k weights, median of 5")
    ap.add_argument("--sizes", type=int, nargs="+", default=None)
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument(
        "--reference-python",
        default=os.environ.get("NNCODEC_PYTHON", str(ROOT / ".venv-nncodec" / "bin" / "python")),
    )
    ap.add_argument("--out", default=str(ROOT / "benches" / "results" / "quant_speed.md"))
    args = ap.parse_args()
    sizes = args.sizes or ([100_000] if args.quick else [100_000, 1_000_000])
    repeats = args.repeats or (5 if args.quick else 7)
    have_ref = Path(args.reference_python).exists()
    if not have_ref:
        print(f"reference quantizer not found at {args.reference_python}: nncabac figures only")

    header = (
        "| weights | quantizer | zeros | nncabac Mw/s | reference Mw/s | speed-up "
        "| levels identical |"
    )
    rows = [header, "|---|---|---|---|---|---|---|"]
    print(header)
    verdicts = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            w = laplacian_weights(n)
            imp = importance_for(n)
            wpath = os.path.join(tmp, "w.npz")
            np.savez(wpath, w=w)
            times: dict[str, list[float]] = {k: [] for k, *_ in QUANTIZERS}
            ref_times: dict[str, list[float]] = {k: [] for k, *_ in QUANTIZERS}
            levels: dict[str, np.ndarray] = {}
            ref_levels: dict[str, np.ndarray] = {}
            for _ in range(repeats):  # rounds: ours and the reference alternate under one load
                if have_ref:
                    for key, (secs, lv) in reference(args.reference_python, wpath, tmp).items():
                        ref_times[key].append(secs)
                        ref_levels[key] = lv
                for key, _, dq, lam, weighted in QUANTIZERS:
                    secs, levels[key] = ours(w, dq, lam, imp if weighted else None)
                    times[key].append(secs)
            for key, label, _, _, _ in QUANTIZERS:
                secs = statistics.median(times[key])
                zeros = float((levels[key] == 0).mean())
                cells = [f"{n:,}", label, f"{zeros:.1%}", f"{n / secs / 1e6:.1f}"]
                if key in ref_levels:
                    r_secs = statistics.median(ref_times[key])
                    same = np.array_equal(levels[key], ref_levels[key])
                    ratio = r_secs / secs
                    cells += [f"{n / r_secs / 1e6:.2f}", f"{ratio:.1f}×", "yes" if same else "NO"]
                    if key == "trellis1":
                        ok = "met" if ratio >= TARGET else "NOT met"
                        verdicts.append(
                            f"{n:,} weights: trellis with rate model {ratio:.1f}× the reference "
                            f"(target ≥ {TARGET:g}×: {ok})"
                        )
                else:
                    cells += ["–", "–", "–"]
                row = "| " + " | ".join(cells) + " |"
                rows.append(row)
                print(row, flush=True)
    note = (
        f"\nSingle thread, median of {repeats}, Laplacian float32 weights (σ = {SIGMA}, seed 0) at "
        f"qp {QP}, qp_density {QP_DENSITY}, max_num_no_rem {MAX_NUM_NO_REM}, "
        f"general_profile_idc 0. "
        f"Importance: log-normal, mean 1. "
        + (
            "Reference: NNCodec 2.1.3 `quantLayer` (via `shared/tools/nnc_oracle.py`) in its own "
            "interpreter on the same input, one call per quantizer per round, rounds alternating "
            "with ours. "
            if have_ref
            else "Reference not run. "
        )
        + f"{os.cpu_count()} CPUs ({platform.processor() or platform.machine()}); python "
        f"{sys.version.split()[0]}, numpy {np.__version__}; nncabac {build_info()}. "
        f"Other jobs may share the machine: figures are medians, not best-of.\n"
    )
    text = "# Quantizer throughput\n\n" + "\n".join(rows) + "\n"
    if verdicts:
        text += "\n" + "\n".join(f"* {v}" for v in verdicts) + "\n"
        for v in verdicts:
            print(v)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text + note)
    print(note.strip())
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
