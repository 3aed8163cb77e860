"""Whole-model benchmark: ``nncabac.compress`` / ``nncabac.decompress`` on the CIFAR-100
ResNet-56 and the digits CNN of ``shared/models``, at three settings from near-lossless to
aggressive, side by side with NNCodec 2.1.3's own whole-model API on the same state dicts.

    .venv/bin/python benches/bench_models.py            # median of 5, 320 crops (~4 min)
    .venv/bin/python benches/bench_models.py --quick    # median of 3, 128 crops, smaller check

Settings (the same quantizer settings for both codecs):

1. ``uniform qp −44``: near-lossless; ``compress(qp=-44, method="uniform")`` /
   ``nnc.compress(qp=-44, use_dq=False, lambda_scale=0)``.
2. ``trellis qp −38, λ 0``: NNCodec's defaults; ``compress(qp=-38, method="trellis",
   lambda_=0)`` / ``nnc.compress()`` (qp −38, use_dq, lambda_scale 0).
3. ``trellis λ 1, bits_per_weight=T``: aggressive; ours searches the qp for a size target
   (``compress(bits_per_weight=T)``, our default trellis λ 1); NNCodec, which has no size
   target, gets the qp ours found (``use_dq=True, lambda_scale=1``). Its speed ratio uses ours
   at that fixed qp (same work); the table also shows our time with the search.

Per codec and setting: file size, ratio to fp32 (4 bytes × every state-dict element), bits per
parameter (8 × file bytes / elements), the metric of the reconstruction (ResNet-56: top-1
agreement and mean KL(original ‖ reconstructed) on natural 32×32 crops of scikit-learn's sample
photos; digits CNN: test accuracy on the stratified 20 % split), compress and decompress time
(median of ``--repeats``, the whole model, ours on all cores as the package does by default,
decompressing to torch tensors; the notes also give the Rust part of our decompress alone, on
all cores and on one, so the rest — file read, Python, torch — can be told apart), and the peak
memory of compressing. The reconstructions are
decoded back in this process for the metric, and the conv/linear weights of the two codecs'
reconstructions are compared bit for bit.

Method, time: each codec runs in its own fresh subprocess per (model, setting): ours with this
interpreter (``--job``), NNCodec in its virtualenv (``_reference_models.py``); both load the same
state dict (ours the ``.pt``, NNCodec an ``.npz`` of it with int64 buffers as int32 and 0-d
arrays as shape (1,), which is all its API accepts), compress once (the memory measurement
below; also the warm-up), then compress ``repeats`` times and decompress ``repeats`` times.

Method, memory: in that subprocess, after the imports and the load, the RSS is read and the
kernel's peak-RSS mark is reset (``/proc/self/clear_refs`` ← 5); the first compress runs; peak
= VmHWM − that RSS: everything compressing touched (Python, numpy, Rust, threads, the output),
nothing that was resident before. A synthetic model (4 Laplacian 2048×2048 float32 layers,
64 MiB) gives a second point, so the slope (peak growth per fp32 byte) and the constant of
"peak ≤ 1.5 × fp32 + constant" can be read off.

The reference's Python is ``.venv-nncodec/bin/python`` (``NNCODEC_PYTHON`` or
``--reference-python`` to change it); it needs NNCodec's imports (torch, torchvision, pandas,
scikit-learn, h5py, tqdm, opencv): see README, "Benchmarks". Results are printed and written to
``benches/results/models.md``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
MIB = 1024 * 1024
TARGET_SPEED = 10.0  # whole-model compress and decompress, times faster than NNCodec
TARGET_PEAK = 1.5  # peak memory of compressing ≤ TARGET_PEAK × fp32 size + a constant


# ------------------------------------------------------------------------------------------------
# worker: one fresh process per (model, setting) for our codec
# ------------------------------------------------------------------------------------------------
def _status_kb(name: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(name + ":"):
                return int(line.split()[1])
    raise KeyError(name)


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def worker(job_path: str) -> None:
    """Load the state dict, measure the first compress's peak RSS, time compress/decompress."""
    import torch

    import nncabac

    job = json.loads(Path(job_path).read_text())
    sd = torch.load(job["state"], map_location="cpu", weights_only=True)
    kwargs, out, repeats = job["kwargs"], job["container"], job["repeats"]
    gc.collect()
    base_kb = _status_kb("VmRSS")
    reset = _reset_peak()
    t = time.perf_counter()
    report = nncabac.compress(sd, out, **kwargs)
    first_s = time.perf_counter() - t
    peak_kb = _status_kb("VmHWM")
    enc_t = []
    for _ in range(repeats):
        t = time.perf_counter()
        report = nncabac.compress(sd, out, **kwargs)
        enc_t.append(time.perf_counter() - t)
    qps = [t.qp for t in report.tensors if t.qp is not None and len(t.shape) > 1]
    qp = qps[0] if qps else None
    fixed_t: list[float] = []
    if "bits_per_weight" in kwargs and qp is not None:
        fixed = {k: v for k, v in kwargs.items() if k != "bits_per_weight"}
        scratch = out + ".fixed"
        for _ in range(repeats):
            t = time.perf_counter()
            nncabac.compress(sd, scratch, qp=qp, **fixed)
            fixed_t.append(time.perf_counter() - t)
        os.remove(scratch)
    dec_t = []
    for _ in range(repeats):
        t = time.perf_counter()
        nncabac.decompress(out)
        dec_t.append(time.perf_counter() - t)
    # the Rust part alone (parse, verify, CABAC decode, dequantize), on all cores and on one
    data = Path(out).read_bytes()
    rust_t: dict[str, list[float]] = {"all": [], "one": []}
    for _ in range(repeats):
        for key, threads in (("all", None), ("one", 1)):
            t = time.perf_counter()
            nncabac._nncabac.decode_container(data, threads=threads)
            rust_t[key].append(time.perf_counter() - t)
    by_method: dict[str, int] = {}
    for t_ in report.tensors:
        by_method[t_.method] = by_method.get(t_.method, 0) + t_.num_bytes
    print(
        json.dumps(
            {
                "first_compress_s": first_s,
                "compress_s": enc_t,
                "fixed_compress_s": fixed_t,
                "decompress_s": dec_t,
                "rust_decode_s": rust_t,
                "num_bytes": report.file_bytes,
                "payload_bytes": by_method,
                "qp": qp,
                "steps": [(s.qp, s.bits_per_weight) for s in report.steps],
                "base_kb": base_kb,
                "peak_kb": peak_kb,
                "peak_reset": reset,
            }
        )
    )


def _run_json(cmd: list[str]) -> dict[str, Any]:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise RuntimeError(f"{Path(cmd[1]).name} exited {proc.returncode}: " + " | ".join(tail))
    res: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return res


def run_ours(state: Path, container: Path, kwargs: dict[str, Any], repeats: int, tmp: Path):  # type: ignore[no-untyped-def]
    job = tmp / "job.json"
    job.write_text(
        json.dumps(
            {"state": str(state), "container": str(container), "kwargs": kwargs, "repeats": repeats}
        )
    )
    return _run_json([sys.executable, str(Path(__file__)), "--job", str(job)])


def run_reference(python: str, npz: Path, settings: dict[str, Any], repeats: int, tmp: Path):  # type: ignore[no-untyped-def]
    job = {
        "npz": str(npz),
        "bitstream": str(tmp / "ref.nnc"),
        "reconstruction": str(tmp / "ref_rec.npz"),
        "settings": settings,
        "repeats": repeats,
    }
    path = tmp / "ref_job.json"
    path.write_text(json.dumps(job))
    res = _run_json([python, str(Path(__file__).with_name("_reference_models.py")), str(path)])
    with np.load(job["reconstruction"]) as d:
        res["rec"] = {k: d[k] for k in d.files}
    return res


# ------------------------------------------------------------------------------------------------
# models, settings, metrics
# ------------------------------------------------------------------------------------------------
@dataclass
class Setting:
    key: str
    label: str
    ours: dict[str, Any]
    ref: dict[str, Any]


def settings_for(target_bpw: float) -> list[Setting]:
    return [
        Setting(
            "uniform",
            "uniform qp −44",
            dict(qp=-44, method="uniform"),
            dict(qp=-44, use_dq=False, lambda_scale=0),
        ),
        Setting(
            "default",
            "trellis qp −38, λ 0 (NNCodec default)",
            dict(qp=-38, method="trellis", lambda_=0.0),
            dict(qp=-38, use_dq=True, lambda_scale=0),
        ),
        Setting(
            "target",
            f"trellis λ 1, bits_per_weight={target_bpw:g}",
            dict(bits_per_weight=target_bpw),
            dict(use_dq=True, lambda_scale=1),  # qp: the one ours found
        ),
    ]


@dataclass
class Row:
    model: str
    setting: Setting
    codec: str
    qp: int | None
    num_bytes: int
    fp32_bytes: int
    elements: int
    metric: tuple[float, ...]
    compress_s: float
    decompress_s: float
    peak_mib: float | None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float:
        return self.fp32_bytes / self.num_bytes

    @property
    def bits(self) -> float:
        return 8 * self.num_bytes / self.elements


@dataclass
class Bench:
    name: str
    model: Any
    state: dict[str, Any]
    x: Any
    y: Any  # digits labels, or None for fidelity against the original outputs
    ref_logits: Any
    target_bpw: float

    def metric(self, sd: dict[str, Any]) -> tuple[float, ...]:
        import _models

        self.model.load_state_dict(sd, strict=True)
        try:
            out = _models.logits(self.model, self.x)
        finally:
            self.model.load_state_dict(self.state, strict=True)
        if self.y is not None:
            return (float((out.argmax(1) == self.y).float().mean()),)
        return _models.fidelity(self.ref_logits, out)

    def metric_text(self, m: tuple[float, ...]) -> str:
        if self.y is not None:
            return f"acc {100 * m[0]:.2f} %"
        return f"agree {100 * m[0]:.2f} %, KL {m[1]:.3g}"


def state_to_torch(rec: dict[str, np.ndarray], like: dict[str, Any]) -> dict[str, Any]:
    """NNCodec's reconstruction as a state dict of the original dtypes and shapes."""
    import torch

    out = {}
    for k, v in like.items():
        a = rec[k].reshape(tuple(v.shape))
        out[k] = torch.from_numpy(np.ascontiguousarray(a)).to(v.dtype)
    return out


def state_to_npz(sd: dict[str, Any], path: Path) -> None:
    arrays = {}
    for k, v in sd.items():
        a = v.numpy()
        if a.dtype.kind in "iu":
            a = a.astype(np.int32)
        arrays[k] = a.reshape(1) if a.ndim == 0 else a
    np.savez(path, **arrays)


def load_benches(quick: bool) -> list[Bench]:
    import _models

    res = _models.load_resnet56()
    crops = _models.sample_photo_crops(max_crops=128 if quick else 320, seed=0)
    res_sd = {k: v.clone() for k, v in res.state_dict().items()}
    digits = _models.load_digits_cnn()
    data = _models.digits_splits()
    dig_sd = {k: v.clone() for k, v in digits.state_dict().items()}
    return [
        Bench("ResNet-56 (CIFAR-100)", res, res_sd, crops, None, _models.logits(res, crops), 6.0),
        Bench("digits CNN", digits, dig_sd, data.x_test, data.y_test, None, 1.0),
    ]


# ------------------------------------------------------------------------------------------------
# main
# ------------------------------------------------------------------------------------------------
def median(xs: list[float]) -> float:
    return float(statistics.median(xs))


def fmt_s(s: float) -> str:
    return f"{1000 * s:.0f} ms" if s >= 0.0995 else f"{1000 * s:.1f} ms"


def synthetic_state(seed: int = 0) -> dict[str, Any]:
    import torch

    rng = np.random.default_rng(seed)
    return {
        f"layer{i}.weight": torch.from_numpy(
            rng.laplace(0.0, 0.02, (2048, 2048)).astype(np.float32)
        )
        for i in range(4)
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="median of 3, 128 crops")
    ap.add_argument("--repeats", type=int, default=None, help="timing repeats (5; 3 with --quick)")
    ap.add_argument(
        "--reference-python",
        default=os.environ.get("NNCODEC_PYTHON", str(ROOT / ".venv-nncodec" / "bin" / "python")),
    )
    ap.add_argument("--out", default=str(ROOT / "benches" / "results" / "models.md"))
    ap.add_argument("--job", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.job:
        worker(args.job)
        return
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import torch

    import nncabac

    repeats = args.repeats or (3 if args.quick else 5)
    if repeats < 3:
        ap.error("--repeats must be at least 3")
    t_start, load_start = time.perf_counter(), os.getloadavg()[0]
    ref_python = args.reference_python
    ref_status = ""
    if not Path(ref_python).exists():
        ref_status = f"NNCodec not run: no interpreter at {ref_python} (see README, Benchmarks)"
    else:
        probe = subprocess.run(
            [ref_python, "-c", "import nncodec.nnc, numpy; print(numpy.__version__)"],
            capture_output=True,
            text=True,
        )
        if probe.returncode != 0:
            why = (probe.stderr.strip().splitlines() or ["?"])[-1]
            ref_status = f"NNCodec not run: `import nncodec.nnc` fails in {ref_python}: {why}"
    if ref_status:
        print(ref_status)

    benches = load_benches(args.quick)
    rows: list[Row] = []
    identical: dict[tuple[str, str], str] = {}
    originals: dict[str, str] = {}
    header = (
        "| model | setting | codec | qp | bytes | ×fp32 | bits/param | metric "
        "| compress | decompress | peak MiB (×fp32) |"
    )
    print(header)
    with tempfile.TemporaryDirectory() as tmp_:
        tmp = Path(tmp_)
        for b in benches:
            elements = sum(int(v.numel()) for v in b.state.values())
            fp32 = 4 * elements
            originals[b.name] = b.metric_text(b.metric(b.state))
            pt, npz = tmp / "state.pt", tmp / "state.npz"
            torch.save(b.state, pt)
            state_to_npz(b.state, npz)
            for s in settings_for(b.target_bpw):
                container = tmp / "ours.nncabac"
                o = run_ours(pt, container, s.ours, repeats, tmp)
                rec = nncabac.decompress(container)
                peak = (o["peak_kb"] - o["base_kb"]) / 1024
                extra = {k: o[k] for k in ("payload_bytes", "steps", "peak_reset")}
                extra["rust_decode_s"] = {k: median(v) for k, v in o["rust_decode_s"].items()}
                extra["fixed_compress_s"] = (
                    median(o["fixed_compress_s"]) if o["fixed_compress_s"] else None
                )
                row = Row(
                    b.name,
                    s,
                    "nncabac",
                    o["qp"],
                    o["num_bytes"],
                    fp32,
                    elements,
                    b.metric(rec),
                    median(o["compress_s"]),
                    median(o["decompress_s"]),
                    peak,
                    extra,
                )
                rows.append(row)
                print(fmt_row(row, b), flush=True)
                if ref_status:
                    continue
                settings = dict(s.ref)
                settings.setdefault("qp", o["qp"])
                try:
                    r = run_reference(ref_python, npz, settings, repeats, tmp)
                except (RuntimeError, OSError, ValueError) as e:
                    ref_status = f"NNCodec failed ({b.name}, {s.label}): {e}"
                    print(ref_status)
                    continue
                ref_sd = state_to_torch(r["rec"], b.state)
                weights = [k for k, v in b.state.items() if v.ndim > 1]
                same = sum(torch.equal(rec[k], ref_sd[k]) for k in weights)
                identical[(b.name, s.key)] = f"{same}/{len(weights)}"
                ref_row = Row(
                    b.name,
                    s,
                    "NNCodec",
                    settings["qp"],
                    r["num_bytes"],
                    fp32,
                    elements,
                    b.metric(ref_sd),
                    median(r["compress_s"]),
                    median(r["decompress_s"]),
                    (r["peak_kb"] - r["base_kb"]) / 1024,
                )
                rows.append(ref_row)
                print(fmt_row(ref_row, b), flush=True)

        # memory scaling: a 64 MiB synthetic model, ours only, one compress per setting
        syn = synthetic_state()
        syn_pt = tmp / "synthetic.pt"
        torch.save(syn, syn_pt)
        del syn
        syn_elements = 4 * 2048 * 2048
        syn_rows = []
        for s in settings_for(4.0)[1:2] if args.quick else settings_for(4.0):
            o = run_ours(syn_pt, tmp / "syn.nncabac", s.ours, 1, tmp)
            syn_rows.append((s, o, (o["peak_kb"] - o["base_kb"]) / 1024))

    lines = [
        "# Whole-model benchmark",
        "",
        f"`benches/bench_models.py{' --quick' if args.quick else ''}`; see its docstring for "
        "the method. Settings are the same for both codecs (qp, trellis/uniform, λ); ours keeps "
        "BN running statistics and integer buffers exact (package policy), NNCodec quantizes "
        "every float tensor (non-weights at its nonweight_qp −75).",
        "",
    ]
    if ref_status:
        lines += [f"**{ref_status}**", ""]
    for b in benches:
        lines += [
            f"## {b.name}",
            "",
            f"{sum(int(v.numel()) for v in b.state.values()):,} parameters and buffers, fp32 "
            f"{4 * sum(int(v.numel()) for v in b.state.values()):,} bytes; original: "
            f"{originals[b.name]}.",
            "",
            header,
            "|" + "---|" * 11,
        ]
        lines += [fmt_row(r, b) for r in rows if r.model == b.name]
        lines.append("")

    ratio_header = (
        "| model | setting | compress speed-up | decompress speed-up | size ours/NNCodec "
        "| metric ours | metric NNCodec | weights identical |"
    )
    ratio_lines = [ratio_header, "|" + "---|" * 8]
    verdicts = []
    for b in benches:
        for s in settings_for(b.target_bpw):
            ours = [r for r in rows if r.model == b.name and r.setting.key == s.key]
            theirs = [r for r in ours if r.codec == "NNCodec"]
            ours = [r for r in ours if r.codec == "nncabac"]
            if not ours or not theirs:
                continue
            o, t = ours[0], theirs[0]
            o_enc = o.extra.get("fixed_compress_s") or o.compress_s
            enc_x, dec_x = t.compress_s / o_enc, t.decompress_s / o.decompress_s
            size = o.num_bytes / t.num_bytes
            ratio_lines.append(
                f"| {b.name} | {s.label} | {enc_x:.1f}× | {dec_x:.1f}× | {size:.3f} "
                f"| {b.metric_text(o.metric)} | {b.metric_text(t.metric)} "
                f"| {identical.get((b.name, s.key), '-')} |"
            )
            verdicts.append((enc_x, dec_x, size, better_or_equal(b, o.metric, t.metric)))
    if verdicts:
        lines += ["## nncabac against NNCodec (same model, same settings)", ""]
        lines += ratio_lines
        n = len(verdicts)
        enc_ok = sum(v[0] >= TARGET_SPEED for v in verdicts)
        dec_ok = sum(v[1] >= TARGET_SPEED for v in verdicts)
        size_ok = sum(v[2] <= 1.0 for v in verdicts if v[3])
        size_n = sum(1 for v in verdicts if v[3])
        lines += [
            "",
            "Speed-up: NNCodec's median time / ours (compress at the same qp for the "
            "bits_per_weight row). Size: ours / NNCodec (< 1: ours smaller). Weights identical: "
            "conv/linear weight tensors whose reconstructions are bit-identical.",
            "",
            f"* Target: compress ≥ {TARGET_SPEED:g}× faster: met in {enc_ok}/{n} "
            f"(range {min(v[0] for v in verdicts):.1f}–{max(v[0] for v in verdicts):.1f}×).",
            f"* Target: decompress ≥ {TARGET_SPEED:g}× faster: met in {dec_ok}/{n} "
            f"(range {min(v[1] for v in verdicts):.1f}–{max(v[1] for v in verdicts):.1f}×).",
            "* Target: at equal or better metric, equal or smaller size: metric equal or better "
            f"(accuracy/agreement no lower, KL at most {100 * KL_TOLERANCE:g} % higher) "
            f"in {size_n}/{n}; of those, size equal or smaller in {size_ok}/{size_n}.",
            "",
        ]

    # memory
    lines += [
        "## Peak memory of compressing (nncabac)",
        "",
        "Peak RSS of the first compress in a fresh process minus the RSS just before it (the "
        "loaded model, the interpreter and the imports are not counted; see the docstring). "
        "With the loaded model, the process peak is fp32 + this.",
        "",
    ]
    mem = [
        "| model | fp32 MiB | setting | compressed MiB | peak MiB | peak / fp32 |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r.codec == "nncabac" and r.peak_mib is not None:
            fp = r.fp32_bytes / MIB
            mem.append(
                f"| {r.model} | {fp:.2f} | {r.setting.label} | {r.num_bytes / MIB:.2f} "
                f"| {r.peak_mib:.1f} | {r.peak_mib / fp:.2f} |"
            )
    syn_fp = 4 * syn_elements / MIB
    for s, o, p in syn_rows:
        mem.append(
            f"| synthetic 4×2048×2048 | {syn_fp:.2f} | {s.label} | {o['num_bytes'] / MIB:.2f} "
            f"| {p:.1f} | {p / syn_fp:.2f} |"
        )
    lines += mem
    res_rows = [r for r in rows if r.codec == "nncabac" and r.model.startswith("ResNet")]
    fits = []
    for s, _o, p in syn_rows:
        small = [r for r in res_rows if r.setting.key == s.key]
        if small and small[0].peak_mib is not None:
            fp_small = small[0].fp32_bytes / MIB
            slope = (p - small[0].peak_mib) / (syn_fp - fp_small)
            const = small[0].peak_mib - slope * fp_small
            fits.append((s, slope, const))
    lines.append("")
    for s, slope, const in fits:
        ok = "meets" if slope <= TARGET_PEAK else "does NOT meet"
        ok_total = "meets" if slope + 1 <= TARGET_PEAK else "does NOT meet"
        lines.append(
            f"* {s.label.split(',')[0]}: peak ≈ {slope:.2f} × fp32 + {const:.1f} MiB (line "
            f"through ResNet-56 and the synthetic model): {ok} the target ≤ {TARGET_PEAK:g} × "
            f"fp32 + constant when the target counts what compressing adds; counting the "
            f"loaded model too (process peak ≈ {slope + 1:.2f} × fp32 + constant) it {ok_total} "
            "it."
        )
    nncodec_peaks = [r for r in rows if r.codec == "NNCodec" and r.peak_mib is not None]
    if nncodec_peaks:
        lines.append(
            "* NNCodec, same measurement: "
            + "; ".join(
                f"{r.model.split(' ')[0]} {r.setting.key} {r.peak_mib:.1f} MiB"
                for r in nncodec_peaks
            )
            + "."
        )
    lines.append("")

    # notes
    notes = ["## Notes", ""]
    for r in rows:
        if r.codec != "nncabac":
            continue
        pb = r.extra.get("payload_bytes", {})
        exact = pb.get("raw", 0) + pb.get("lossless", 0)
        overhead = r.num_bytes - sum(pb.values())
        note = (
            f"* {r.model}, {r.setting.label}: of our {r.num_bytes:,} bytes, {exact:,} are "
            f"tensors stored exact (BN running statistics, integer buffers, tiny tensors) and "
            f"{overhead:,} the container header (names, shapes, checksums)"
        )
        theirs = [
            t
            for t in rows
            if t.codec == "NNCodec" and t.model == r.model and t.setting.key == r.setting.key
        ]
        if theirs:
            note += (
                f"; without the header, ours / NNCodec = "
                f"{(r.num_bytes - overhead) / theirs[0].num_bytes:.3f}"
            )
        rust = r.extra.get("rust_decode_s")
        if rust:
            note += (
                f"; decompress {fmt_s(r.decompress_s)}, of which the Rust decode "
                f"(parse, checksums, CABAC, dequantization) {fmt_s(rust['all'])} on all cores "
                f"({fmt_s(rust['one'])} on one)"
            )
        if r.extra.get("steps"):
            probes = ", ".join(f"{q} → {bpw:.2f}" for q, bpw in r.extra["steps"])
            note += (
                f"; rate control probed qp {probes} bits/weight and chose qp {r.qp}; "
                f"compress at that fixed qp: {fmt_s(r.extra['fixed_compress_s'])}"
            )
        notes.append(note + ".")
    if any(not r.extra.get("peak_reset", True) for r in rows):
        notes.append("* /proc/self/clear_refs was not writable: peaks include the load's peak.")
    notes.append(
        f"* Machine: {os.cpu_count()} CPUs ({platform.machine()}), python "
        f"{sys.version.split()[0]}, numpy {np.__version__}, torch {torch.__version__}; "
        f"nncabac {build_info()}; torch threads {torch.get_num_threads()}. Other jobs may share "
        f"the machine: figures are medians, not best-of (1-minute load average "
        f"{load_start:.1f} at the start, {os.getloadavg()[0]:.1f} at the end). Total run time "
        f"{time.perf_counter() - t_start:.0f} s."
    )
    lines += notes
    text = "\n".join(lines) + "\n"
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)
    print()
    print(text)
    print(f"written to {args.out}")


KL_TOLERANCE = 0.01  # relative: KLs this close count as equal


def better_or_equal(b: Bench, ours: tuple[float, ...], theirs: tuple[float, ...]) -> bool:
    """Ours at least as good: accuracy (digits), or agreement no lower and KL no more than
    ``KL_TOLERANCE`` (relative) higher (ResNet)."""
    if b.y is not None:
        return ours[0] >= theirs[0]
    return ours[0] >= theirs[0] and ours[1] <= theirs[1] * (1 + KL_TOLERANCE)


def fmt_row(r: Row, b: Bench) -> str:
    search = ""
    fixed = r.extra.get("fixed_compress_s")
    if fixed:
        search = f" (search; {fmt_s(fixed)} at qp {r.qp})"
    peak = "-"
    if r.peak_mib is not None:
        peak = f"{r.peak_mib:.1f} ({r.peak_mib * MIB / r.fp32_bytes:.2f})"
    return (
        f"| {r.model} | {r.setting.label} | {r.codec} | {r.qp} | {r.num_bytes:,} "
        f"| {r.ratio:.2f} | {r.bits:.3f} | {b.metric_text(r.metric)} "
        f"| {fmt_s(r.compress_s)}{search} | {fmt_s(r.decompress_s)} | {peak} |"
    )


def build_info() -> str:
    from bench_quant_speed import build_info as info

    return info()


if __name__ == "__main__":
    main()
