"""Federated learning with compressed traffic: FedAvg on scikit-learn's digits, 8 non-IID
clients, the digits CNN, five ways of sending the models.

    .venv/bin/python benches/bench_fl.py      # 5 settings x 3 seeds, 30 rounds (~15 min, 2 CPUs)
    .venv/bin/python benches/bench_fl.py --rounds 5 --seeds 0 --settings a,d --no-write  # a look
    .venv/bin/python benches/bench_fl.py --simulation --seeds 0   # under Flower's simulation
                                                                  # engine (Ray; slower)

Every setting runs the same code: a Flower ``ClientApp`` (local SGD on the client's shard) with
:class:`nncabac.flower.NncabacMod`, and ``CompressedStrategy(FedAvg())`` on the server, driven by
``FedAvg.start`` over an in-process :class:`nncabac.flower.LocalGrid` (deterministic, one client
at a time; ``--simulation``: ``flwr.simulation.run_simulation`` instead, about 2.5× slower here,
with the same figures up to the order in which replies are summed). Only the codec differs:

(a) ``fp32`` — :class:`~nncabac.flower.UncompressedCodec`: every message a whole fp32 model.
(b) ``sparse`` — top-k (``--keep``) of the difference to the receiver's model with error
    accumulation, no quantization or entropy coding: each kept value as float32, its position as
    an int32 index or one bit of a bitmap (whichever is smaller per tensor), biases as dense
    float32 differences, a JSON header (names, shapes, counts); first contact: the whole model.
(c) ``nncabac`` — :class:`~nncabac.flower.NncabacCodec`: differential update, the same top-k and
    error accumulation, trellis quantization at ``--qp``, CABAC; first contact: the whole model
    coded at ``--full-qp``.
(d) (c) with per-filter scale factors: least squares against the dense update
    (``scaling=True``), sent by the clients with their updates (``--scaling both``: the server's
    broadcast too).
(e) (c) with per-filter scale factors learned on the client's shard (the paper's method:
    :func:`nncabac.update.learn_scales`, ``--scale-steps`` Adam steps, all else frozen), through
    the mod's ``scales`` hook.

Bytes: each message's payload (the coded container, the sparse record or the raw tensors with
their header), up (client → server) and down (server → client, counted once per client that
receives it), summed over all rounds, the first whole-model download included; Flower's own
framing is not counted for any setting. Accuracy: the server's global model on the stratified
20 % test split, after every round. Data: the 80 % train split, shared out over the clients by a
Dirichlet(``--alpha``) draw per class (seeded); every client trains ``--epochs`` local epochs per
round (SGD, momentum 0.9, batch 16); all clients take part in every round. The same seeds, initial
model, rounds and epochs for every setting.

Results: printed, and written to ``benches/results/fl.md`` (table), ``fl.png`` (accuracy per round
and against cumulative bytes, first seed) and ``fl.json`` (per-round figures).
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import struct
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _models import DigitsCNN, digits_splits  # noqa: E402

from nncabac import DecodeError  # noqa: E402
from nncabac.update import sparsify  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
SETTINGS = {
    "a": "(a) fp32",
    "b": "(b) sparse float32 + positions",
    "c": "(c) nncabac (diff + trellis + CABAC)",
    "d": "(d) (c) + per-filter scaling",
    "e": "(e) (c) + learned per-filter scaling",
}


class TopKFloat32Codec:
    """(b): sparsification only. Difference to the base (+ residual), top-``keep`` per tensor of
    rank ≥ 2 (dense for biases), values as float32, positions as int32 indices or a bitmap."""

    MAGIC = b"TOPKF32\x00"

    def __init__(self, keep: float) -> None:
        self.keep = keep

    def encode(
        self,
        state: dict[str, Any],
        base: dict[str, Any],
        residual: dict[str, Any],
        *,
        scales: Any = None,
    ) -> Any:
        from nncabac.flower import Coded, UncompressedCodec

        if not base:
            return UncompressedCodec().encode(state, base, residual)
        head: list[Any] = []
        parts: list[bytes] = []
        new: dict[str, Any] = {}
        res: dict[str, Any] = {}
        for name, x in state.items():
            b = base[name].astype(np.float32)
            acc = x.astype(np.float32) - b
            if name in residual and residual[name].shape == acc.shape:
                acc = acc + residual[name]
            s = sparsify(acc, keep=self.keep) if x.ndim >= 2 else acc
            idx = np.flatnonzero(s).astype(np.int32)
            vals = s.reshape(-1)[idx].astype(np.float32)
            if x.ndim < 2:  # dense
                mode, pos = "dense", b""
                vals = s.reshape(-1).astype(np.float32)
            elif s.size <= 32 * idx.size:
                mode, pos = "bitmap", np.packbits(s.reshape(-1) != 0).tobytes()
            else:
                mode, pos = "index", idx.astype("<i4").tobytes()
            head.append([name, list(x.shape), mode, int(vals.size)])
            parts += [pos, vals.astype("<f4").tobytes()]
            sent = np.zeros(acc.size, np.float32)
            if mode == "dense":
                sent[:] = vals
            else:
                sent[idx] = vals
            sent = sent.reshape(acc.shape)
            new[name] = (b + sent).astype(x.dtype)
            res[name] = acc - sent
        h = json.dumps(head, separators=(",", ":")).encode()
        data = self.MAGIC + struct.pack("<I", len(h)) + h + b"".join(parts)
        return Coded(data, new, res)

    def decode(self, data: bytes, base: dict[str, Any]) -> dict[str, Any]:
        from nncabac.flower import UncompressedCodec

        if not base:
            return UncompressedCodec().decode(data, base)
        if data[:8] != self.MAGIC:
            raise DecodeError("not a top-k record")
        (n,) = struct.unpack("<I", data[8:12])
        pos = 12 + n
        out: dict[str, Any] = {}
        for name, shape, mode, count in json.loads(data[12:pos]):
            b = base[name].astype(np.float32)
            size = int(np.prod(shape))
            sent = np.zeros(size, np.float32)
            if mode == "bitmap":
                nb = (size + 7) // 8
                mask = np.unpackbits(np.frombuffer(data, np.uint8, nb, pos))[:size].astype(bool)
                pos += nb
                idx = np.flatnonzero(mask)
            elif mode == "index":
                idx = np.frombuffer(data, "<i4", count, pos).astype(np.int64)
                pos += 4 * count
            else:
                idx = np.arange(size)
            sent[idx] = np.frombuffer(data, "<f4", count, pos)
            pos += 4 * count
            out[name] = (b + sent.reshape(shape)).astype(base[name].dtype)
        if pos != len(data):
            raise DecodeError("trailing bytes in a top-k record")
        return out


def make_codec(setting: str, args: argparse.Namespace, *, server: bool) -> Any:
    from nncabac.flower import NncabacCodec, UncompressedCodec

    if setting == "a":
        return UncompressedCodec()
    if setting == "b":
        return TopKFloat32Codec(args.keep_down if server else args.keep)
    return NncabacCodec(
        qp=args.qp,
        fine_qp=None if args.fine_qp is None else args.qp + args.fine_qp,
        method="trellis",
        keep=args.keep_down if server else args.keep,
        scaling=setting in "de" and (args.scaling == "both" or not server),
        full_qp=args.full_qp,
    )


def dirichlet_split(y: np.ndarray, clients: int, alpha: float, seed: int) -> list[np.ndarray]:
    """Indices per client: each class's samples shared out in Dirichlet(alpha) proportions."""
    rng = np.random.default_rng(seed)
    parts: list[list[int]] = [[] for _ in range(clients)]
    for c in range(int(y.max()) + 1):
        idx = rng.permutation(np.flatnonzero(y == c))
        cuts = (np.cumsum(rng.dirichlet([alpha] * clients)) * len(idx)).astype(int)[:-1]
        for k, chunk in enumerate(np.split(idx, cuts)):
            parts[k] += chunk.tolist()
    return [np.sort(np.array(p, dtype=np.int64)) for p in parts]


def make_client_app(
    setting: str, codec: Any, shards: list[tuple[torch.Tensor, torch.Tensor]], args: Any
) -> Any:
    from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
    from flwr.clientapp import ClientApp

    from nncabac.flower import NncabacMod
    from nncabac.update import learn_scales

    def learned(context: Context, state: dict[str, Any], filters: dict[str, Any]) -> Any:
        """(e): the factors trained on the client's shard (the paper's method), all else frozen."""
        x, y = shards[int(context.node_config["partition-id"])]
        model = DigitsCNN()
        model.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in state.items()})
        g = torch.Generator().manual_seed(args.seed)
        order = torch.randperm(len(x), generator=g)
        batches = [(x[order[i : i + 32]], y[order[i : i + 32]]) for i in range(0, len(x), 32)]
        return learn_scales(
            model, filters, batches, F.cross_entropy, steps=args.scale_steps, lr=args.scale_lr
        )

    app = ClientApp(mods=[NncabacMod(codec, scales=learned if setting == "e" else None)])

    @app.train()  # type: ignore[misc]
    def train(msg: Message, context: Context) -> Message:
        torch.set_num_threads(1)
        pid = int(context.node_config["partition-id"])
        rnd = int(msg.content["config"]["server-round"])
        x, y = shards[pid]
        model = DigitsCNN()
        model.load_state_dict(msg.content["arrays"].to_torch_state_dict())
        opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9)
        g = torch.Generator().manual_seed(args.seed * 100_003 + pid * 1009 + rnd)
        model.train()
        total = 0.0
        for _ in range(args.epochs):
            order = torch.randperm(len(x), generator=g)
            for i in range(0, len(x), args.batch):
                j = order[i : i + args.batch]
                opt.zero_grad()
                loss = F.cross_entropy(model(x[j]), y[j])
                loss.backward()  # type: ignore[no-untyped-call]
                opt.step()
                total += float(loss.detach()) * len(j)
        metrics = MetricRecord(
            {"num-examples": len(x), "train-loss": total / (args.epochs * len(x))}
        )
        arrays = ArrayRecord(model.state_dict())
        return Message(RecordDict({"arrays": arrays, "metrics": metrics}), reply_to=msg)

    return app


def accuracy(state: dict[str, Any], x: torch.Tensor, y: torch.Tensor) -> float:
    model = DigitsCNN()
    model.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in state.items()})
    model.eval()
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def run(setting: str, args: argparse.Namespace) -> dict[str, Any]:
    from flwr.app import Array, ArrayRecord, Context, MetricRecord
    from flwr.serverapp import Grid, ServerApp
    from flwr.serverapp.strategy import FedAvg

    from nncabac.flower import CompressedStrategy, LocalGrid

    data = digits_splits()
    parts = dirichlet_split(data.y_train.numpy(), args.clients, args.alpha, args.seed)
    shards = [(data.x_train[p], data.y_train[p]) for p in parts]
    codec = make_codec(setting, args, server=False)
    client_app = make_client_app(setting, codec, shards, args)
    torch.manual_seed(args.seed)
    init_state = {k: v.numpy() for k, v in DigitsCNN().state_dict().items()}
    init = ArrayRecord({k: Array(np.asarray(v, order="C")) for k, v in init_state.items()})
    strategy = CompressedStrategy(
        FedAvg(
            fraction_evaluate=0.0, min_train_nodes=args.clients, min_available_nodes=args.clients
        ),
        codec=make_codec(setting, args, server=True),
    )
    acc: dict[int, float] = {}

    def evaluate(rnd: int, arrays: ArrayRecord) -> MetricRecord:
        acc[rnd] = accuracy({k: v.numpy() for k, v in arrays.items()}, data.x_test, data.y_test)
        return MetricRecord({"accuracy": acc[rnd]})

    def main(grid: Grid, context: Context | None = None) -> Any:
        random.seed(args.seed)  # FedAvg's node sampling (all nodes; the order of the replies)
        return strategy.start(
            grid=grid, initial_arrays=init, num_rounds=args.rounds, evaluate_fn=evaluate
        )

    t0 = time.perf_counter()
    if args.simulation:
        from flwr.simulation import run_simulation

        server_app = ServerApp()
        server_app.main()(main)
        run_simulation(
            server_app=server_app,
            client_app=client_app,
            num_supernodes=args.clients,
            backend_config={
                "client_resources": {"num_cpus": 1, "num_gpus": 0.0},
                "init_args": {"num_cpus": 2, "logging_level": "ERROR", "log_to_driver": False},
            },
        )
        held_acc = None
    else:
        grid = LocalGrid(client_app, args.clients)
        main(grid)
        # the model a client actually holds after the last round (what it would deploy)
        held = grid.contexts[grid.node_ids[0]].state.array_records["nncabac.held"]
        held_acc = accuracy({k: v.numpy() for k, v in held.items()}, data.x_test, data.y_test)
    seconds = time.perf_counter() - t0
    rounds = list(range(1, args.rounds + 1))
    down = [strategy.traffic.get(r, {}).get("down", 0) for r in rounds]
    up = [strategy.traffic.get(r, {}).get("up", 0) for r in rounds]
    return {
        "setting": setting,
        "label": SETTINGS[setting],
        "codec": repr(codec),
        "accuracy": [acc.get(r) for r in [0, *rounds]],
        "down": down,
        "up": up,
        "bytes_down": strategy.bytes_down,
        "bytes_up": strategy.bytes_up,
        "first_down": down[0],
        "held_accuracy": held_acc,
        "dropped": strategy.dropped,
        "seconds": seconds,
    }


def table(results: list[dict[str, Any]]) -> str:
    """One row per setting: bytes (mean over seeds; they barely vary), final accuracy (mean and
    range over seeds) and its difference to (a) (paired by seed, then averaged)."""
    by: dict[str, list[dict[str, Any]]] = {}
    for r in results:
        by.setdefault(r["setting"], []).append(r)
    ref = {r["seed"]: r for r in by.get("a", [])}
    ref_total = float(np.mean([r["bytes_down"] + r["bytes_up"] for r in ref.values()] or [0]))
    lines = [
        "| setting | bytes up | bytes down | total | of which 1st download | ratio to (a) "
        "| final accuracy | Δ to (a), points | mean of last 3 rounds | client-held model |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for rs in by.values():
        up = float(np.mean([r["bytes_up"] for r in rs]))
        down = float(np.mean([r["bytes_down"] for r in rs]))
        first = float(np.mean([r["first_down"] for r in rs]))
        final = [100 * r["accuracy"][-1] for r in rs]
        acc = f"{np.mean(final):.2f} %"
        if len(rs) > 1:
            acc += f" ({min(final):.1f}–{max(final):.1f})"
        diffs = [
            100 * (r["accuracy"][-1] - ref[r["seed"]]["accuracy"][-1])
            for r in rs
            if r["seed"] in ref
        ]
        last3 = np.mean([np.mean(r["accuracy"][-3:]) for r in rs]) * 100
        held = [r["held_accuracy"] for r in rs if r["held_accuracy"] is not None]
        ratio = f"{ref_total / (up + down):.1f}×" if ref_total else ""
        held_s = f"{100 * np.mean(held):.2f} %" if held else ""
        diff_s = f"{np.mean(diffs):+.2f}" if diffs else ""
        lines.append(
            f"| {rs[0]['label']} | {up:,.0f} | {down:,.0f} | {up + down:,.0f} | {first:,.0f} "
            f"| {ratio} | {acc} | {diff_s} | {last3:.2f} % | {held_s} |"
        )
    return "\n".join(lines)


def report(results: list[dict[str, Any]], text: str, args: argparse.Namespace) -> str:
    """fl.md: what was run, the table, and headline lines for benches/report.py."""
    by: dict[str, list[dict[str, Any]]] = {}
    for r in results:
        by.setdefault(r["setting"], []).append(r)
    head = []
    ref = {r["seed"]: r for r in by.get("a", [])}
    if ref:
        ref_total = np.mean([r["bytes_up"] + r["bytes_down"] for r in ref.values()])
        for s in ("c", "d", "e"):
            rs = [r for r in by.get(s, []) if r["seed"] in ref]
            if not rs:
                continue
            total = np.mean([r["bytes_up"] + r["bytes_down"] for r in rs])
            diff = np.mean([100 * (r["accuracy"][-1] - ref[r["seed"]]["accuracy"][-1]) for r in rs])
            head.append(
                f"<!-- headline: Federated learning, digits CNN, {args.clients} non-IID clients, "
                f"{args.rounds} rounds: {SETTINGS[s]} sends {ref_total / total:.0f}× fewer bytes "
                f"than fp32, final accuracy {diff:+.2f} points -->"
            )
    notes = []
    for s, t in (("d", "c"), ("e", "c"), ("e", "d")):
        pairs = [(r, u) for r in by.get(s, []) for u in by.get(t, []) if r["seed"] == u["seed"]]
        if not pairs:
            continue
        more = np.mean(
            [
                (r["bytes_up"] + r["bytes_down"]) / (u["bytes_up"] + u["bytes_down"])
                for r, u in pairs
            ]
        )
        acc = np.mean([100 * (r["accuracy"][-1] - u["accuracy"][-1]) for r, u in pairs])
        last3 = np.mean(
            [100 * (np.mean(r["accuracy"][-3:]) - np.mean(u["accuracy"][-3:])) for r, u in pairs]
        )
        wins = sum(r["accuracy"][-1] > u["accuracy"][-1] for r, u in pairs)
        notes.append(
            f"* ({s}) against ({t}): {100 * (more - 1):+.1f} % bytes, final accuracy {acc:+.2f} "
            f"points (higher in {wins} of {len(pairs)} seeds), mean of the last 3 rounds "
            f"{last3:+.2f} points."
        )
    if notes:
        notes.append(
            "* With three seeds and 360 test images, accuracy differences under about one point "
            "are within the seed-to-seed spread (see the ranges): read them as ties."
        )
    cmd = " ".join(["python benches/bench_fl.py", *getattr(args, "argv", [])])
    rounds, seeds = args.rounds, args.seeds.split(",")
    opts = (
        f"{args.clients} clients, Dirichlet α {args.alpha}, {rounds} rounds, {args.epochs} local "
        f"epochs (SGD lr {args.lr}, momentum 0.9, batch {args.batch}); top-k {args.keep} (down "
        f"{args.keep_down}); nncabac update qp {args.qp}, trellis, first model at qp "
        f"{args.full_qp if args.full_qp is not None else args.qp}; seeds {', '.join(seeds)}"
    )
    return "\n".join(
        [
            "# Federated learning: bytes and accuracy of compressed FedAvg",
            "",
            *head,
            "",
            f"`{cmd}` ({opts}). What each setting sends and how bytes and accuracy are measured: "
            "the docstring of `benches/bench_fl.py`. Bytes are means over the seeds; accuracy is "
            "the server's global model on the 360-image test split (one image = 0.28 points), "
            "final round, mean and range over the seeds; Δ is paired by seed. *Client-held model*: "
            "the model client 0 holds after the last round (lags the server's under a lossy "
            "downlink).",
            "",
            text,
            "",
            *notes,
            "",
            "![accuracy per round and against cumulative bytes](fl.png)",
            "",
        ]
    )


def plot(results: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    for r in results:
        if r["seed"] != results[0]["seed"]:
            continue  # one seed's curves
        acc = 100 * np.array(r["accuracy"], dtype=float)
        ax1.plot(range(len(acc)), acc, marker=".", label=r["label"])
        cum = np.cumsum(np.array(r["down"]) + np.array(r["up"]))
        ax2.plot(cum, acc[1:], marker=".", label=r["label"])  # after each round
    ax1.set(xlabel="round", ylabel="test accuracy (%)", title="accuracy per round (first seed)")
    ax2.set(xlabel="cumulative bytes (up + down, all clients)", ylabel="test accuracy (%)")
    ax2.set_xscale("log")
    ax2.set_title("accuracy against bytes sent")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.set_ylim(0, 100)
    ax1.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--settings", default="a,b,c,d,e")
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--rounds", type=int, default=30)
    p.add_argument("--epochs", type=int, default=2, help="local epochs per round")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--alpha", type=float, default=0.5, help="Dirichlet concentration (non-IID)")
    p.add_argument("--keep", type=float, default=0.05, help="top-k fraction, (b)-(d)")
    p.add_argument("--keep-down", type=float, default=None, help="downlink top-k (default --keep)")
    p.add_argument("--fine-qp", type=int, default=None, help="bias qp, relative to --qp")
    p.add_argument("--scaling", choices=["up", "both"], default="up", help="(d): who sends scales")
    p.add_argument("--scale-steps", type=int, default=20, help="(e): Adam steps on the factors")
    p.add_argument("--scale-lr", type=float, default=1e-2, help="(e): their learning rate")
    p.add_argument("--qp", type=int, default=-20, help="update qp, (c) and (d)")
    p.add_argument("--full-qp", type=int, default=-24, help="qp of the first full model")
    p.add_argument("--seeds", default="0,1,2", help="comma-separated; data split, init, training")
    p.add_argument("--simulation", action="store_true", help="Flower simulation engine (Ray)")
    p.add_argument("--no-write", action="store_true", help="print only")
    p.add_argument("--from-json", action="store_true", help="rewrite fl.md/png from fl.json")
    args = p.parse_args()
    if args.keep_down is None:
        args.keep_down = args.keep
    if args.from_json:  # the figures of the last run, re-rendered: nothing is measured
        saved = json.loads((RESULTS / "fl.json").read_text())
        args = argparse.Namespace(**saved["args"])
        write(saved["results"], args)
        return
    args.argv = sys.argv[1:]
    logging.getLogger("flwr").setLevel(logging.WARNING)
    torch.set_num_threads(1)

    results = []
    for seed in [int(x) for x in args.seeds.split(",")]:
        for s in args.settings.split(","):
            r = run(s, argparse.Namespace(**{**vars(args), "seed": seed}))
            r["seed"] = seed
            results.append(r)
            print(
                f"seed {seed} {r['label']}: up {r['bytes_up']:,} B, down {r['bytes_down']:,} B, "
                f"final accuracy {100 * r['accuracy'][-1]:.2f} % ({r['seconds']:.0f} s)",
                flush=True,
            )
    print(table(results))
    if not args.no_write:
        RESULTS.mkdir(exist_ok=True)
        saved = {"args": vars(args), "results": results}
        (RESULTS / "fl.json").write_text(json.dumps(saved, indent=1))
        write(results, args)


def write(results: list[dict[str, Any]], args: argparse.Namespace) -> None:
    plot(results, RESULTS / "fl.png")
    (RESULTS / "fl.md").write_text(report(results, table(results), args))


if __name__ == "__main__":
    main()
