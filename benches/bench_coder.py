"""Coder benchmark: single-thread encode/decode throughput and bits/weight of nncabac, side by
side with the NNC reference (NNCodec 2.1.3) on identical levels when its virtualenv exists.

    python benches/bench_coder.py                   # 1M and 10M levels, median of 5
    python benches/bench_coder.py --sizes 1000000 --repeats 7
    NNCODEC_PYTHON=/path/to/venv/bin/python python benches/bench_coder.py

The reference runs in its own interpreter (it needs numpy<2); by default that is
``.venv-nncodec/bin/python`` (see README, "Benchmarks"). Results are printed and written to
``benches/results/coder.md``.
"""

from __future__ import annotations

import argparse
import json
import os
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
G = 11


def laplacian(n: int, seed: int = 0, scale: float = 0.55) -> np.ndarray:
    """Levels with about 60 % zeros, as a trained layer at NNCodec's default step gives."""
    return np.round(np.random.default_rng(seed).laplace(0, scale, n)).astype(np.int32)


def dq_valid(levels: np.ndarray) -> np.ndarray:
    """Reconstruction indices valid along the trellis: what the decoder returns for `levels`."""
    enc = nnc.Encoder()
    enc.encode_layer(
        levels,
        dq_flag=1,
        num_gtx_flags=G,
        param_opt_flag=0,
        general_profile_idc=0,
        parent_node_id_present_flag=0,
    )
    dec = nnc.Decoder(enc.finish())
    return dec.decode_layer(
        levels.shape,
        dq_flag=1,
        num_gtx_flags=G,
        general_profile_idc=0,
        parent_node_id_present_flag=0,
    )


def median_time(fn, repeats: int):  # type: ignore[no-untyped-def]
    times, result = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), result


def ours(levels: np.ndarray, dq: int, opt: int, repeats: int) -> dict:
    params = dict(dq_flag=dq, num_gtx_flags=G, general_profile_idc=0, parent_node_id_present_flag=0)
    bins = 0

    def encode() -> bytes:
        nonlocal bins
        enc = nnc.Encoder()
        enc.encode_layer(levels, param_opt_flag=opt, **params)
        bins = enc.bins_coded
        return enc.finish()

    def decode() -> np.ndarray:
        dec = nnc.Decoder(data)
        out = dec.decode_layer(levels.shape, **params)
        dec.finish()
        return out

    enc_s, data = median_time(encode, repeats)
    dec_s, out = median_time(decode, repeats)
    assert np.array_equal(out, levels), "round trip failed"
    return {
        "encode_s": enc_s,
        "decode_s": dec_s,
        "num_bytes": len(data),
        "bins": bins,
        "data": data,
    }


def reference(python: str, levels_path: str, dq: int, opt: int, repeats: int, tmp: str) -> dict:
    job = {
        "levels": levels_path,
        "dq_flag": dq,
        "param_opt_flag": opt,
        "num_gtx_flags": G,
        "general_profile_idc": 0,
        "repeats": repeats,
        "out": os.path.join(tmp, "ref.bin"),
    }
    job_path = os.path.join(tmp, "job.json")
    with open(job_path, "w") as f:
        json.dump(job, f)
    script = Path(__file__).with_name("_reference_coder.py")
    proc = subprocess.run(
        [python, str(script), str(SHARED / "tools"), job_path],
        capture_output=True,
        text=True,
        check=True,
    )
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    res["data"] = Path(job["out"]).read_bytes()
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument(
        "--reference-python",
        default=os.environ.get("NNCODEC_PYTHON", str(ROOT / ".venv-nncodec" / "bin" / "python")),
    )
    ap.add_argument("--out", default=str(ROOT / "benches" / "results" / "coder.md"))
    args = ap.parse_args()
    have_ref = Path(args.reference_python).exists()
    if not have_ref:
        print(f"reference coder not found at {args.reference_python}: nncabac figures only")

    header = (
        "| weights | dq | opt | bits/w | enc Mw/s | enc Mbins/s | dec Mw/s | dec Mbins/s "
        "| ref enc Mw/s | ref dec Mw/s | enc ratio | dec ratio | bytes identical |"
    )
    rows = [header, "|" + "---|" * 13]
    print(header)
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.sizes:
            base = laplacian(n)
            for dq in (0, 1):
                levels = dq_valid(base) if dq else base
                path = os.path.join(tmp, "levels.npy")
                np.save(path, levels)
                for opt in (0, 1):
                    o = ours(levels, dq, opt, args.repeats)
                    cells = [
                        f"{n:,}",
                        str(dq),
                        str(opt),
                        f"{8 * o['num_bytes'] / n:.4f}",
                        f"{n / o['encode_s'] / 1e6:.1f}",
                        f"{o['bins'] / o['encode_s'] / 1e6:.1f}",
                        f"{n / o['decode_s'] / 1e6:.1f}",
                        f"{o['bins'] / o['decode_s'] / 1e6:.1f}",
                    ]
                    if have_ref:
                        r = reference(args.reference_python, path, dq, opt, args.repeats, tmp)
                        same = r["data"] == o["data"] and r["consumed"] == r["num_bytes"]
                        cells += [
                            f"{n / r['encode_s'] / 1e6:.1f}",
                            f"{n / r['decode_s'] / 1e6:.1f}",
                            f"{r['encode_s'] / o['encode_s']:.2f}x",
                            f"{r['decode_s'] / o['decode_s']:.2f}x",
                            "yes" if same else "NO",
                        ]
                    else:
                        cells += ["-"] * 5
                    row = "| " + " | ".join(cells) + " |"
                    rows.append(row)
                    print(row, flush=True)
    note = (
        f"\nSingle thread, median of {args.repeats}, Laplacian levels (~60 % zeros), G = {G}, "
        f"general_profile_idc 0; python {sys.version.split()[0]}, numpy {np.__version__}.\n"
    )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("# Coder throughput\n\n" + "\n".join(rows) + "\n" + note)
    print(note.strip())
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
