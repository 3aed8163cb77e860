"""Quantization benchmark: rate-distortion curves of nncabac's quantizers on two real models.

    .venv/bin/python benches/bench_quant_rd.py            # both models, ~12 min on 2 busy cores
    .venv/bin/python benches/bench_quant_rd.py --quick    # coarser qp grid, fewer crops (~2-4 min)
    .venv/bin/python benches/bench_quant_rd.py --models digits --train-digits

For each model every conv/linear weight is quantized at one qp (swept) by each quantizer below,
all other tensors are coded as the package policy does (biases finely, BN statistics exactly),
through ``nncabac.ratecontrol.code_tensors`` — the path ``nncabac.compress`` takes. Rate =
bits/weight of the real CABAC payloads of the quantized tensors (over the conv/linear weights).

Quantizers: ``uniform`` (nearest level), ``rdoq`` (λ=1), ``trellis λ=0`` (NNCodec's default,
a pure distortion search on the dependent-quantization grid), ``trellis`` (λ=1, with rate
model), and importance-weighted trellis (λ=1): ``+Fisher`` uses
``nncabac.importance.fisher_diagonal`` (mean 1 per tensor), ``+√Fisher`` its square root
(renormalized: a tempered importance, see the results), ``+Fisher(global)`` the raw Fisher
diagonal scaled by its mean over all quantized weights (so bits can move between layers), and
``+BN`` (ResNet) ``nncabac.importance.bn_importance``.

Distortion: (a) Fisher-weighted MSE ``Σ F_i (x_i − x̂_i)² / Σ F_i`` over the quantized weights
(F = the raw Fisher diagonal, a second-order proxy of the loss increase), and (b) the task metric:
digits CNN — test accuracy (and KL to the original); CIFAR-100 ResNet-56 — top-1 agreement and
mean KL(original ‖ reconstructed) on natural 32×32 crops of scikit-learn's sample photos. The
Fisher of the digits CNN comes from 8 training batches; that of the ResNet from calibration
crops (disjoint from the evaluation crops) labelled with the original model's own predictions.

BD-rate (Bjøntegaard): log(rate) is interpolated (monotone piecewise cubic, PCHIP) as a function
of the metric on each curve's Pareto points, and averaged over the overlapping metric range;
the result is the mean rate change of the test curve against the anchor at equal metric
(negative = saving). Task-metric ranges are clipped to the useful region (``bd_metrics``):
accuracy/agreement 80–100 %, KL ≤ 0.1 nats. With 360 test digits (one image = 0.28 %) and a
steep accuracy cliff below 1.5 bits/weight, the accuracy BD-rates of the digits CNN are noisy
(tens of percent between qp grids); its KL and MSE figures are the stable ones.

When NNCodec's virtualenv exists (``.venv-nncodec``, or ``NNCODEC_PYTHON``), its ``quantLayer``
runs at the same settings for every tensor and qp of the four quantizers it has (not the
importance-weighted ones) in a subprocess (``_reference_quant.py``); its levels are compared with
the levels in our payloads and its points are drawn beside ours.

Outputs: ``benches/results/quant_rd_<model>.png``, ``quant_rd_<model>.csv`` and ``quant_rd.md``.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _models  # noqa: E402

from nncabac import nnc  # noqa: E402
from nncabac.importance import bn_importance, fisher_diagonal, normalize  # noqa: E402
from nncabac.policy import resolve  # noqa: E402
from nncabac.ratecontrol import code_tensors  # noqa: E402
from nncabac.tensor import NUM_GTX, QP_DENSITY, decode_entry  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benches" / "results"
FLOOR = 1e-3  # importance floor, as nncabac.importance.normalize


# ------------------------------------------------------------------------------------------------
# quantizer configurations
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Config:
    key: str
    label: str
    method: str
    lambda_: float
    importance: str | None = None  # None or a key of Bench.importance
    reference: tuple[int, float] | None = None  # (dq_flag, lambda_scale) of NNCodec's quantLayer
    style: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)


CONFIGS = [
    Config("uniform", "uniform", "uniform", 0.0, None, (0, 0.0), {"color": "C0", "marker": "o"}),
    Config("rdoq", "RDOQ λ=1", "rdoq", 1.0, None, (0, 1.0), {"color": "C1", "marker": "s"}),
    Config(
        "trellis0",
        "trellis λ=0 (NNCodec default)",
        "trellis",
        0.0,
        None,
        (1, 0.0),
        {"color": "C7", "marker": "v", "ls": "--"},
    ),
    Config(
        "trellis", "trellis λ=1", "trellis", 1.0, None, (1, 1.0), {"color": "C2", "marker": "^"}
    ),
    Config("trellis_f", "trellis λ=1 +Fisher", "trellis", 1.0, "fisher", None, {"color": "C3"}),
    Config(
        "trellis_fs",
        "trellis λ=1 +√Fisher",
        "trellis",
        1.0,
        "fisher_sqrt",
        None,
        {"color": "C6", "ls": "-."},
    ),
    Config(
        "trellis_fg",
        "trellis λ=1 +Fisher(global)",
        "trellis",
        1.0,
        "fisher_global",
        None,
        {"color": "C4", "ls": ":"},
    ),
    Config("trellis_bn", "trellis λ=1 +BN", "trellis", 1.0, "bn", None, {"color": "C5"}),
]
BY_KEY = {c.key: c for c in CONFIGS}

# (test, anchor) pairs reported as BD-rate
BD_PAIRS = [
    ("trellis", "uniform"),
    ("trellis0", "uniform"),
    ("rdoq", "uniform"),
    ("trellis_f", "trellis"),
    ("trellis_fs", "trellis"),
    ("trellis_fg", "trellis"),
    ("trellis_bn", "trellis"),
]


# ------------------------------------------------------------------------------------------------
# the two model set-ups
# ------------------------------------------------------------------------------------------------
@dataclass
class Bench:
    name: str
    title: str
    model: torch.nn.Module
    state: dict[str, np.ndarray]
    quantized: list[str]
    fisher: dict[str, np.ndarray]  # raw Fisher diagonal of the quantized weights
    importance: dict[str, dict[str, np.ndarray]]  # importance kind -> name -> array
    evaluate: Callable[[torch.nn.Module], dict[str, float]]
    # (key, axis label, higher is better, log axis, largest bits/weight shown or None)
    metrics: list[tuple[str, str, bool, bool, float | None]]
    configs: list[str]
    qps: list[int]
    thresholds: list[tuple[str, float, bool, str]]  # (metric, threshold, higher is better, label)
    lambda_qps: list[int] | None = None  # qp grid of the λ sweep (None: no sweep)
    notes: list[str] = field(default_factory=list)


def raw_fisher(
    model: torch.nn.Module,
    data: Iterable[tuple[torch.Tensor, torch.Tensor]],
    names: list[str],
    num_batches: int,
) -> dict[str, np.ndarray]:
    """Unnormalized batch-empirical Fisher diagonal (what ``fisher_diagonal`` computes before it
    scales each tensor to mean 1): mean over batches of the squared loss gradient."""
    params = dict(model.named_parameters())
    acc = {n: torch.zeros_like(params[n], dtype=torch.float64) for n in names}
    model.eval()
    seen = 0
    for x, y in data:
        if seen >= num_batches:
            break
        model.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        for n in names:
            grad = params[n].grad
            assert grad is not None
            acc[n] += grad.double() ** 2
        seen += 1
    model.zero_grad(set_to_none=True)
    return {n: (a / seen).numpy() for n, a in acc.items()}


def global_importance(fisher: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Fisher diagonal scaled by its mean over all tensors, floored like ``normalize``."""
    mean = float(np.concatenate([f.ravel() for f in fisher.values()]).mean())
    return {n: np.maximum(f / mean, FLOOR).astype(np.float32) for n, f in fisher.items()}


def tempered(imp: dict[str, np.ndarray], power: float = 0.5) -> dict[str, np.ndarray]:
    """Importance raised to ``power`` (flattening its heavy tail), renormalized to mean 1."""
    return {n: normalize(np.asarray(v, np.float64) ** power, FLOOR) for n, v in imp.items()}


def quantized_names(state: dict[str, np.ndarray], model: torch.nn.Module) -> list[str]:
    """The tensors the policy quantizes at the model qp; checked to be the conv/linear weights."""
    names = [k for k, v in state.items() if resolve(k, v, None).kind == "quantize"]
    layers = {
        f"{n}.weight"
        for n, m in model.named_modules()
        if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))
    }
    assert set(names) == layers, (set(names) ^ layers, "policy != conv/linear weights")
    return names


def state_of(model: torch.nn.Module) -> dict[str, np.ndarray]:
    return {k: v.detach().cpu().numpy().copy() for k, v in model.state_dict().items()}


def digits_bench(quick: bool, train: bool) -> Bench:
    data = _models.digits_splits()
    if train:
        t = time.perf_counter()
        model: torch.nn.Module = _models.train_digits_cnn(data)
        source = f"trained in-process ({time.perf_counter() - t:.1f} s, seed 0)"
    else:
        model = _models.load_digits_cnn()
        source = f"shipped weights `{_models.DIGITS_CNN_PATH.name}`"
    state = state_of(model)
    names = quantized_names(state, model)
    ref_logits = _models.logits(model, data.x_test)
    base_acc = float((ref_logits.argmax(1) == data.y_test).float().mean())

    def fisher_batches() -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
        return _models.batches(data.x_train, data.y_train, 32, shuffle=True, seed=1)

    nb = 8
    fisher = raw_fisher(model, fisher_batches(), names, nb)
    imp_f = fisher_diagonal(
        model, fisher_batches(), F.cross_entropy, num_batches=nb, params=names, floor=FLOOR
    )

    def evaluate(m: torch.nn.Module) -> dict[str, float]:
        out = _models.logits(m, data.x_test)
        acc = float((out.argmax(1) == data.y_test).float().mean())
        _, kl = _models.fidelity(ref_logits, out)
        return {"accuracy": acc, "kl": kl}

    step = 2 if quick else 1
    return Bench(
        name="digits",
        title=f"digits CNN ({sum(state[n].size for n in names):,} weights)",
        model=model,
        state=state,
        quantized=names,
        fisher=fisher,
        importance={
            "fisher": imp_f,
            "fisher_sqrt": tempered(imp_f),
            "fisher_global": global_importance(fisher),
        },
        evaluate=evaluate,
        metrics=[
            ("accuracy", "test accuracy", True, False, 3.0),
            ("kl", "KL(orig ‖ rec), test set [nats]", False, True, None),
        ],
        configs=[c.key for c in CONFIGS if c.importance != "bn"],
        qps=list(range(-42, -3, step)),
        lambda_qps=list(range(-42, -3, step)),
        thresholds=[
            ("accuracy", 0.975, True, "acc ≥ 97.5 %"),
            ("accuracy", 0.95, True, "acc ≥ 95 %"),
            ("kl", 0.01, False, "KL ≤ 0.01"),
            ("kl", 0.1, False, "KL ≤ 0.1"),
        ],
        notes=[
            f"Model: {source}; original test accuracy {100 * base_acc:.2f} % "
            f"({len(data.y_test)} test images, stratified 20 % split of sklearn digits).",
            f"Fisher: {nb} shuffled training batches of 32, true labels.",
        ],
    )


def resnet_bench(quick: bool) -> Bench:
    model = _models.load_resnet56()
    crops = _models.sample_photo_crops()
    order = torch.randperm(len(crops), generator=torch.Generator().manual_seed(0))
    n_eval, n_cal = (128, 64) if quick else (320, 128)
    x_eval, x_cal = crops[order[:n_eval]], crops[order[n_eval : n_eval + n_cal]]
    ref_logits = _models.logits(model, x_eval)
    y_cal = _models.logits(model, x_cal).argmax(1)  # the model's own predictions as labels
    state = state_of(model)
    names = quantized_names(state, model)

    bs = 8

    def fisher_batches() -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
        return _models.batches(x_cal, y_cal, bs)

    nb = n_cal // bs
    fisher = raw_fisher(model, fisher_batches(), names, nb)
    imp_f = fisher_diagonal(
        model, fisher_batches(), F.cross_entropy, num_batches=nb, params=names, floor=FLOOR
    )
    imp_bn = bn_importance(model, floor=FLOOR)

    def evaluate(m: torch.nn.Module) -> dict[str, float]:
        agree, kl = _models.fidelity(ref_logits, _models.logits(m, x_eval))
        return {"agreement": agree, "kl": kl}

    return Bench(
        name="resnet56",
        title=f"CIFAR-100 ResNet-56 ({sum(state[n].size for n in names):,} weights)",
        model=model,
        state=state,
        quantized=names,
        fisher=fisher,
        importance={
            "fisher": imp_f,
            "fisher_sqrt": tempered(imp_f),
            "fisher_global": global_importance(fisher),
            "bn": {n: imp_bn[n] for n in names},
        },
        evaluate=evaluate,
        metrics=[
            ("agreement", "top-1 agreement with original", True, False, None),
            ("kl", "KL(orig ‖ rec) [nats]", False, True, None),
        ],
        configs=[c.key for c in CONFIGS],
        qps=list(range(-44, -9, 4 if quick else 2)),
        lambda_qps=None if quick else list(range(-44, -9, 3)),
        thresholds=[
            ("agreement", 0.99, True, "agree ≥ 99 %"),
            ("agreement", 0.95, True, "agree ≥ 95 %"),
            ("kl", 0.001, False, "KL ≤ 0.001"),
            ("kl", 0.01, False, "KL ≤ 0.01"),
        ],
        notes=[
            f"Inputs: {n_eval} evaluation crops (32×32, CIFAR-100 normalization) of sklearn's "
            f"china.jpg/flower.jpg at 1×, 1/2 and 1/4 scale; Fisher from {n_cal} other crops "
            f"({nb} batches of {bs}) labelled with the original model's predictions.",
        ],
    )


# ------------------------------------------------------------------------------------------------
# one RD point
# ------------------------------------------------------------------------------------------------
def payload_levels(entry: dict[str, Any], payload: bytes) -> np.ndarray:
    dec = nnc.Decoder(payload)
    out = dec.decode_layer(
        tuple(entry["shape"]),
        dq_flag=entry["dq_flag"],
        num_gtx_flags=entry["num_gtx_flags"],
        general_profile_idc=0,
        parent_node_id_present_flag=0,
    )
    dec.finish()
    return out


def measure(
    bench: Bench,
    decoded: dict[str, np.ndarray],
    weight_bytes: int,
) -> dict[str, float]:
    """Rate and distortions of one reconstruction of the model."""
    n = sum(bench.state[k].size for k in bench.quantized)
    sq = {k: (bench.state[k].astype(np.float64) - decoded[k]) ** 2 for k in bench.quantized}
    fsum = sum(float(bench.fisher[k].sum()) for k in bench.quantized)
    bench.model.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in decoded.items()})
    row = {
        "bits_per_weight": 8 * weight_bytes / n,
        "mse": sum(float(s.sum()) for s in sq.values()) / n,
        "fmse": sum(float((bench.fisher[k] * sq[k]).sum()) for k in bench.quantized) / fsum,
    }
    row.update(bench.evaluate(bench.model))
    return row


def run_point(
    bench: Bench, cfg: Config, qp: int
) -> tuple[dict[str, float], dict[str, np.ndarray], dict[str, np.ndarray]]:
    """RD point of one quantizer at one qp; with the levels of our payloads and the decoded
    non-quantized tensors when the reference is to be compared."""
    imp = bench.importance[cfg.importance] if cfg.importance else None
    coded = code_tensors(
        bench.state, qp, method=cfg.method, lambda_=cfg.lambda_, importance=imp, workers=1
    )  # type: ignore[arg-type]
    decoded = {k: np.asarray(decode_entry(e, p)) for k, (e, p) in coded.items()}
    wbytes = sum(len(coded[k][1]) for k in bench.quantized)
    row = measure(bench, decoded, wbytes)
    row["total_bytes"] = sum(len(p) for _, p in coded.values())
    levels, others = {}, {}
    if cfg.reference is not None:
        levels = {k: payload_levels(*coded[k]) for k in bench.quantized}
        others = {k: v for k, v in decoded.items() if k not in levels}
        for k in bench.quantized:
            assert coded[k][0]["qp"] == qp, "overflow fallback changed the qp"
    return row, levels, others


def reference_point(
    bench: Bench,
    cfg: Config,
    qp: int,
    ref_levels: dict[str, np.ndarray],
    ours: dict[str, np.ndarray],
) -> dict[str, float]:
    """RD point of the reference's levels (coded with our bit-exact coder), when they differ."""
    assert cfg.reference is not None
    decoded = dict(ours)  # the non-quantized tensors, as our policy coded them
    wbytes = 0
    for k in bench.quantized:
        enc = nnc.Encoder()
        enc.encode_layer(
            ref_levels[k],
            dq_flag=cfg.reference[0],
            num_gtx_flags=NUM_GTX,
            param_opt_flag=1,
            general_profile_idc=0,
            parent_node_id_present_flag=0,
        )
        wbytes += len(enc.finish())
        decoded[k] = nnc.dequantize_layer(ref_levels[k], qp=qp, qp_density=QP_DENSITY)
    return measure(bench, decoded, wbytes) | {"qp": qp}


def run_reference(
    python: str, bench: Bench, tasks: list[tuple[Config, int]], tmp: str
) -> dict[tuple[str, int], dict[str, np.ndarray]]:
    """NNCodec's quantLayer on every quantized tensor, for each (config, qp)."""
    wpath = os.path.join(tmp, f"{bench.name}_weights.npz")
    np.savez(wpath, **{k: bench.state[k] for k in bench.quantized})
    job = {
        "weights": wpath,
        "out_dir": tmp,
        "tasks": [
            {
                "id": f"{bench.name}_{cfg.key}_{qp}",
                "dq_flag": cfg.reference[0],  # type: ignore[index]
                "qp": qp,
                "qp_density": QP_DENSITY,
                "lambda_scale": cfg.reference[1],  # type: ignore[index]
                "max_num_no_rem": NUM_GTX - 1,
                "general_profile_idc": 0,
                "repeats": 1,
                "names": bench.quantized,
            }
            for cfg, qp in tasks
        ],
    }
    job_path = os.path.join(tmp, f"{bench.name}_job.json")
    Path(job_path).write_text(json.dumps(job))
    script = Path(__file__).with_name("_reference_quant.py")
    proc = subprocess.run(
        [python, str(script), str(_models.SHARED / "tools"), job_path],
        capture_output=True,
        text=True,
    )
    if proc.returncode:
        raise RuntimeError(f"reference quantizer failed:\n{proc.stderr[-3000:]}")
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    out = {}
    for cfg, qp in tasks:
        tid = f"{bench.name}_{cfg.key}_{qp}"
        assert all(q == qp for q in res[tid]["qp_used"].values())
        with np.load(os.path.join(tmp, tid + ".npz")) as z:
            out[(cfg.key, qp)] = {k: z[k] for k in bench.quantized}
    return out


# ------------------------------------------------------------------------------------------------
# BD-rate
# ------------------------------------------------------------------------------------------------
def pareto(rates: np.ndarray, metric: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Points not beaten by a cheaper one: sorted by rate, metric strictly increasing."""
    order = np.argsort(rates, kind="stable")
    keep_r, keep_m, best = [], [], -math.inf
    for i in order:
        if metric[i] > best:
            keep_r.append(rates[i])
            keep_m.append(metric[i])
            best = metric[i]
    return np.array(keep_r), np.array(keep_m)


def bd_rate(
    anchor: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
    lo: float = -math.inf,
    hi: float = math.inf,
) -> tuple[float, float, float] | None:
    """Mean rate change (fraction) of ``test`` against ``anchor`` at equal metric (higher metric
    = better), over the overlap of their metric ranges clipped to [lo, hi]; with that range.
    None when the overlap holds less than two points' worth of curve."""
    from scipy.interpolate import PchipInterpolator

    curves = []
    for rates, metric in (anchor, test):
        ok = (rates > 0) & np.isfinite(metric)
        r, m = pareto(rates[ok], metric[ok])
        if len(r) < 2:
            return None
        curves.append((np.log(r), m))
    a_lo = max(lo, max(c[1].min() for c in curves))
    a_hi = min(hi, min(c[1].max() for c in curves))
    if not a_hi > a_lo:
        return None
    grid = np.linspace(a_lo, a_hi, 201)
    lr = [PchipInterpolator(m, logr)(grid) for logr, m in curves]
    diff = lr[1] - lr[0]
    mean = float((diff[1:] + diff[:-1]).mean() / 2)  # trapezoidal rule on the uniform grid
    return float(np.expm1(mean)), a_lo, a_hi


def bd_metrics(
    bench: Bench,
) -> list[tuple[str, str, Callable[[dict[str, float]], float], float, float]]:
    """(key, description, transform to a higher-is-better metric, lo, hi) for BD-rate."""
    out: list[tuple[str, str, Callable[[dict[str, float]], float], float, float]] = [
        (
            "fmse",
            "Fisher-weighted MSE (dB)",
            lambda r: -10 * math.log10(r["fmse"]),
            -math.inf,
            math.inf,
        ),
        ("mse", "MSE (dB)", lambda r: -10 * math.log10(r["mse"]), -math.inf, math.inf),
    ]
    if bench.name == "digits":
        out.append(("accuracy", "test accuracy, 80-100 %", lambda r: r["accuracy"], 0.8, 1.0))
    else:
        out.append(("agreement", "top-1 agreement, 80-100 %", lambda r: r["agreement"], 0.8, 1.0))
    out.append(
        (
            "kl",
            "KL (dB), KL ≤ 0.1 nats",
            lambda r: -10 * math.log10(max(r["kl"], 1e-12)),
            10.0,
            math.inf,
        )
    )
    return out


def rate_at(rows: list[dict[str, float]], key: str, threshold: float, higher: bool) -> float | None:
    """Smallest bits/weight (linearly interpolated on the Pareto points) at which the metric
    reaches ``threshold``."""
    r = np.array([x["bits_per_weight"] for x in rows])
    m = np.array([x[key] if higher else -x[key] for x in rows])
    pr, pm = pareto(r, m)
    t = threshold if higher else -threshold
    if not len(pm) or pm[-1] < t:
        return None
    i = int(np.argmax(pm >= t))
    if i == 0:
        return float(pr[0])
    f = (t - pm[i - 1]) / (pm[i] - pm[i - 1])
    return float(pr[i - 1] + f * (pr[i] - pr[i - 1]))


# ------------------------------------------------------------------------------------------------
# main
# ------------------------------------------------------------------------------------------------
def plot(
    bench: Bench,
    results: dict[str, list[dict[str, float]]],
    ref: dict[str, list[dict[str, float]]],
    path: Path,
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("fmse", "Fisher-weighted MSE", False, True, None), *bench.metrics]
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 4.3))
    for ax, (key, label, _higher, log, xmax) in zip(axes, panels):
        for ck in bench.configs:
            cfg = BY_KEY[ck]
            rows = results[ck]
            r = [x["bits_per_weight"] for x in rows]
            style = {"marker": ".", "ms": 4, "lw": 1.2, **cfg.style}
            if "marker" in cfg.style:
                style["ms"] = 3.5
            ax.plot(r, [x[key] for x in rows], label=cfg.label, **style)
            if ck in ref:
                ax.plot(
                    [x["bits_per_weight"] for x in ref[ck]],
                    [x[key] for x in ref[ck]],
                    ls="none",
                    marker="o",
                    mfc="none",
                    mec="k",
                    ms=7,
                    mew=0.6,
                    label="NNCodec quantLayer" if ck == "uniform" else None,
                )
        ax.set_xlabel("bits / weight (CABAC payloads of conv/linear weights)")
        ax.set_ylabel(label)
        if log:
            ax.set_yscale("log")
        if key in ("accuracy", "agreement"):
            ax.set_ylim(0.5, 1.005)
        if xmax is not None:
            ax.set_xlim(0, xmax)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7.5)
    fig.suptitle(f"nncabac quantizers: {bench.title}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def fmt(v: float | None, spec: str = ".3f") -> str:
    return "–" if v is None else format(v, spec)


def sweep(bench: Bench) -> tuple[dict[str, list[dict[str, float]]], dict[tuple[str, int], Any]]:
    """All RD points of the model: ``results[config] = [row per qp]``, and for the configs that
    the reference has, ``(our levels, our decoded non-quantized tensors)`` per (config, qp)."""
    t0 = time.perf_counter()
    results: dict[str, list[dict[str, float]]] = {}
    kept: dict[tuple[str, int], Any] = {}
    for ck in bench.configs:
        cfg = BY_KEY[ck]
        results[ck] = []
        for qp in bench.qps:
            row, levels, others = run_point(bench, cfg, qp)
            row["qp"] = qp
            results[ck].append(row)
            if levels:
                kept[(ck, qp)] = (levels, others)
        print(f"  {cfg.label:30s} done ({time.perf_counter() - t0:.0f} s)", flush=True)
    return results, kept


def compare_reference(
    python: str,
    bench: Bench,
    results: dict[str, list[dict[str, float]]],
    kept: dict[tuple[str, int], Any],
) -> tuple[dict[str, list[dict[str, float]]], str]:
    """Run the reference at every (config, qp) it has, compare its levels with ours, and return
    its RD points (ours where the levels are identical) with a one-line summary."""
    tasks = [(BY_KEY[ck], qp) for ck in bench.configs if BY_KEY[ck].reference for qp in bench.qps]
    with tempfile.TemporaryDirectory() as tmp:
        t1 = time.perf_counter()
        ref_levels = run_reference(python, bench, tasks, tmp)
        t_ref = time.perf_counter() - t1
    ref_rows: dict[str, list[dict[str, float]]] = {}
    same_total = tensors_total = 0
    for ck in dict.fromkeys(cfg.key for cfg, _ in tasks):
        cfg = BY_KEY[ck]
        same = total = 0
        ref_rows[ck] = []
        for qp, row in zip(bench.qps, results[ck]):
            ours, others = kept[(ck, qp)]
            theirs = ref_levels[(ck, qp)]
            eq = [np.array_equal(ours[k], theirs[k]) for k in bench.quantized]
            same += sum(eq)
            total += len(eq)
            if all(eq):
                ref_rows[ck].append(row)
            else:  # its own RD point: its levels, our coder, our non-weight tensors
                ref_rows[ck].append(reference_point(bench, cfg, qp, theirs, others))
        same_total += same
        tensors_total += total
        dq, lam = cfg.reference  # type: ignore[misc]
        print(
            f"  {cfg.label} (quantLayer dq_flag {dq}, lambda_scale {lam:g}): "
            f"{same}/{total} tensor×qp levels identical"
        )
    summary = (
        f"NNCodec 2.1.3 quantLayer at the same settings (qp_density 2, max_num_no_rem 10, "
        f"general_profile_idc 0) for uniform, RDOQ, trellis λ=0 and trellis λ=1, "
        f"{len(tasks)} (quantizer, qp) runs in {t_ref:.0f} s: {same_total}/{tensors_total} "
        f"tensor levels identical to ours"
        f" ({'ALL IDENTICAL' if same_total == tensors_total else 'MISMATCHES'})."
    )
    print("  " + summary)
    return ref_rows, summary


def bd_table(bench: Bench, results: dict[str, list[dict[str, float]]]) -> list[str]:
    """Markdown table of the BD-rates of BD_PAIRS (also printed)."""
    metrics = bd_metrics(bench)
    table = [
        "| test vs anchor | " + " | ".join(d for _, d, _, _, _ in metrics) + " |",
        "|---" * (1 + len(metrics)) + "|",
    ]
    for test, anchor in BD_PAIRS:
        if test not in bench.configs or anchor not in bench.configs:
            continue
        pair = f"{BY_KEY[test].label} vs {BY_KEY[anchor].label}"
        cells = []
        for _, desc, tf, lo, hi in metrics:
            a, t = (
                (
                    np.array([r["bits_per_weight"] for r in results[ck]]),
                    np.array([tf(r) for r in results[ck]]),
                )
                for ck in (anchor, test)
            )
            bd = bd_rate(a, t, lo, hi)
            cells.append("n/a" if bd is None else f"{100 * bd[0]:+.1f} %")
            print(f"  BD-rate {pair} [{desc}]: {cells[-1]}")
        table.append(f"| {pair} | " + " | ".join(cells) + " |")
    return table


def threshold_table(bench: Bench, results: dict[str, list[dict[str, float]]]) -> list[str]:
    """Markdown table: bits/weight each quantizer needs to reach each fidelity threshold."""
    table = [
        "| quantizer | " + " | ".join(t[3] for t in bench.thresholds) + " |",
        "|---" * (1 + len(bench.thresholds)) + "|",
    ]
    for ck in bench.configs:
        cells = [fmt(rate_at(results[ck], k, t, h), ".2f") for k, t, h, _ in bench.thresholds]
        table.append(f"| {BY_KEY[ck].label} | " + " | ".join(cells) + " |")
    return table


LAMBDAS = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)


def lambda_sweep(bench: Bench, qps: list[int]) -> list[str]:
    """Markdown table: BD-rate (MSE) of RDOQ and trellis against uniform for each λ
    (``lambda_scale``) — how the rate model's weight should be chosen. Quantized tensors only,
    no task metric."""
    sub = {k: bench.state[k] for k in bench.quantized}
    n = sum(v.size for v in sub.values())

    def curve(method: str, lam: float) -> tuple[np.ndarray, np.ndarray]:
        rates, dbs = [], []
        for qp in qps:
            coded = code_tensors(sub, qp, method=method, lambda_=lam, workers=1)  # type: ignore[arg-type]
            sq = sum(
                float(((decode_entry(e, p) - sub[k].astype(np.float64)) ** 2).sum())
                for k, (e, p) in coded.items()
            )
            rates.append(8 * sum(len(p) for _, p in coded.values()) / n)
            dbs.append(-10 * math.log10(sq / n))
        return np.array(rates), np.array(dbs)

    anchor = curve("uniform", 0.0)
    table = ["| λ (lambda_scale) | RDOQ vs uniform | trellis vs uniform |", "|---|---|---|"]
    for lam in LAMBDAS:
        cells = []
        for method in ("rdoq", "trellis"):
            bd = None if method == "rdoq" and lam == 0 else bd_rate(anchor, curve(method, lam))
            cells.append("–" if bd is None else f"{100 * bd[0]:+.1f} %")
        table.append(f"| {lam:g} | " + " | ".join(cells) + " |")
        print(f"  λ = {lam:g}: BD-rate (MSE) RDOQ {cells[0]}, trellis {cells[1]}", flush=True)
    return table


def write_csv(bench: Bench, results: dict[str, list[dict[str, float]]], path: Path) -> None:
    cols = ["qp", "bits_per_weight", "total_bytes", "mse", "fmse"] + [m[0] for m in bench.metrics]
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["quantizer", *cols])
        for ck in bench.configs:
            for r in results[ck]:
                w.writerow([ck] + [r[c] if isinstance(r[c], int) else f"{r[c]:.6g}" for c in cols])


def points_table(bench: Bench, results: dict[str, list[dict[str, float]]]) -> list[str]:
    """Markdown table of every quantizer at about eight of the qps."""
    sample_qps = bench.qps[:: max(1, len(bench.qps) // 8)]
    names = [m[0] for m in bench.metrics]
    table = [
        "| quantizer | qp | bits/w | MSE | F-MSE | " + " | ".join(names) + " |",
        "|---" * (5 + len(names)) + "|",
    ]
    for ck in bench.configs:
        for r in results[ck]:
            if r["qp"] in sample_qps:
                table.append(
                    f"| {BY_KEY[ck].label} | {r['qp']} | {r['bits_per_weight']:.3f} | "
                    f"{r['mse']:.3g} | {r['fmse']:.3g} | "
                    + " | ".join(f"{r[k]:.4g}" for k in names)
                    + " |"
                )
    return table


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="coarser qp grid, fewer crops")
    ap.add_argument(
        "--models", nargs="+", default=["digits", "resnet56"], choices=["digits", "resnet56"]
    )
    ap.add_argument(
        "--train-digits",
        action="store_true",
        help="train the digits CNN in-process instead of loading the shipped weights",
    )
    ap.add_argument(
        "--reference-python",
        default=os.environ.get("NNCODEC_PYTHON", str(ROOT / ".venv-nncodec" / "bin" / "python")),
    )
    ap.add_argument("--no-reference", action="store_true")
    ap.add_argument("--out-dir", default=str(RESULTS))
    args = ap.parse_args()
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    have_ref = not args.no_reference and Path(args.reference_python).exists()
    if not have_ref:
        print("reference quantizer not used (no NNCodec interpreter): nncabac curves only")
    torch.manual_seed(0)
    t_start = time.perf_counter()
    flags = "".join(
        f" {f}" for f, on in (("--quick", args.quick), ("--train-digits", args.train_digits)) if on
    )
    md = [
        "# Quantization: rate-distortion",
        "",
        f"`benches/bench_quant_rd.py{flags}`; see its docstring for the method. Rate: bits per "
        "conv/linear weight of the real CABAC payloads (G = 11, param_opt 1); other tensors are "
        "coded by the package policy (biases at qp −75, BN statistics exact) and not counted. "
        "F-MSE: Fisher-weighted MSE (the objective the +Fisher quantizers minimise). BD-rate: "
        "mean rate change at equal metric (negative = fewer bits), PCHIP of log-rate over the "
        "Pareto points, on the overlapping metric range.",
    ]
    for name in args.models:
        t0 = time.perf_counter()
        if name == "digits":
            bench = digits_bench(args.quick, args.train_digits)
        else:
            bench = resnet_bench(args.quick)
        print(
            f"== {bench.title}: {len(bench.quantized)} tensors, qp {bench.qps[0]}..{bench.qps[-1]}"
        )
        for note in bench.notes:
            print("  " + note)
        results, kept = sweep(bench)
        ref_rows: dict[str, list[dict[str, float]]] = {}
        ref_summary = "not run (no NNCodec interpreter)."
        if have_ref:
            ref_rows, ref_summary = compare_reference(args.reference_python, bench, results, kept)
        del kept
        bd = bd_table(bench, results)
        lam_table = lambda_sweep(bench, bench.lambda_qps) if bench.lambda_qps else []
        png = out_dir / f"quant_rd_{bench.name}.png"
        csv_path = out_dir / f"quant_rd_{bench.name}.csv"
        plot(bench, results, ref_rows, png)
        write_csv(bench, results, csv_path)
        elapsed = time.perf_counter() - t0
        md += [
            "",
            f"## {bench.title}",
            "",
            *[f"* {n}" for n in bench.notes],
            f"* qp {bench.qps[0]} … {bench.qps[-1]} (step {bench.qps[1] - bench.qps[0]}); "
            f"{elapsed:.0f} s.",
            f"* Reference check: {ref_summary}",
            "",
            f"![RD curves]({png.name})",
            "",
            "BD-rate (test against anchor, at equal metric):",
            "",
            *bd,
            "",
            "Bits/weight needed to reach a fidelity (interpolated on the Pareto points):",
            "",
            *threshold_table(bench, results),
            "",
            *(
                [
                    "λ of the rate model: BD-rate at equal MSE against uniform, for each λ "
                    f"(qp {bench.lambda_qps[0]} … {bench.lambda_qps[-1]}, step "
                    f"{bench.lambda_qps[1] - bench.lambda_qps[0]}; conv/linear weights only):",
                    "",
                    *lam_table,
                    "",
                ]
                if bench.lambda_qps
                else []
            ),
            f"Sample points (all points: [{csv_path.name}]({csv_path.name})):",
            "",
            *points_table(bench, results),
        ]
        print(f"  written {png.name}, {csv_path.name} ({elapsed:.0f} s)")
    md += [
        "",
        f"Total run time {time.perf_counter() - t_start:.0f} s; torch {torch.__version__}, "
        f"numpy {np.__version__}, python {sys.version.split()[0]}.",
        "",
    ]
    (out_dir / "quant_rd.md").write_text("\n".join(md))
    print(f"written {out_dir / 'quant_rd.md'}")


if __name__ == "__main__":
    main()
