"""The ``nncabac`` command line: compress, decompress, info, diff, patch, demo.

Exit codes: 0 success, 1 a check failed (demo round trip), 2 usage or input error (missing,
corrupt or unsupported file), 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import pickle
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def _progress(label: str) -> Any:
    """A one-line progress printer for rate-control steps (stderr, only on a terminal)."""
    tty = sys.stderr.isatty()

    def step(s: Any) -> None:
        if tty:
            print(
                f"\r{label}: qp {s.qp:4d} -> {s.bits_per_weight:.3f} bits/weight"
                f"{' ok' if s.accepted else ''}   ",
                end="",
                file=sys.stderr,
                flush=True,
            )

    return step


def _compress(args: argparse.Namespace) -> int:
    from . import models

    src = Path(args.input)
    if not src.exists():
        raise FileNotFoundError(f"no such file or folder: {src}")
    policy: dict[str, Any] = dict(
        method=args.method,
        lambda_=args.lambda_,
        workers=args.workers,
        num_gtx_flags=args.num_gtx_flags,
    )
    if args.qp is not None and args.bits_per_weight is not None:
        raise ValueError("give --qp or --bits-per-weight, not both")
    if args.bits_per_weight is not None:
        policy["bits_per_weight"] = args.bits_per_weight
        policy["on_step"] = _progress("rate control")
    else:
        policy["qp"] = args.qp
    t = time.perf_counter()
    if src.is_dir():
        report = models.compress_folder(src, args.output, **policy)
    else:
        report = models.compress(src, args.output, **policy)
    if sys.stderr.isatty() and args.bits_per_weight is not None:
        print(file=sys.stderr)
    dt = time.perf_counter() - t
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        if args.verbose:
            print(report.table())
        n = sum(1 for _ in report.tensors)
        print(
            f"{src} -> {report.path}: {n} tensors, {report.original_bytes:,} -> "
            f"{report.file_bytes:,} bytes ({report.ratio:.1f}x smaller) in {dt:.2f} s"
        )
    return 0


def _decompress(args: argparse.Namespace) -> int:
    from . import models

    src, out = Path(args.input), Path(args.output)
    if not src.exists():
        raise FileNotFoundError(f"no such file or folder: {src}")
    t = time.perf_counter()
    if src.is_dir():
        models.restore_folder(src, out)
    elif out.suffix == ".safetensors":
        models.save_safetensors(src, out)
    elif out.suffix in (".pt", ".pth", ".bin"):
        models.save_pt(src, out)
    else:
        raise ValueError(f"{out}: choose a .safetensors or .pt output")
    print(f"{src} -> {out} in {time.perf_counter() - t:.2f} s")
    return 0


def _info(args: argparse.Namespace) -> int:
    from . import models

    path = Path(args.file)
    if not path.exists():
        raise FileNotFoundError(f"no such file: {path}")
    rows = []
    with models.safe_open(path) as f:
        for name in f.keys():
            e = f.entry(name)
            if args.verify:
                f.get_tensor(name)
            rows.append(e | {"alias_of": e["name"] if e["name"] != name else None, "name": name})
        meta = f.metadata()
        base = f._meta.get("nncabac.base")
        kind = "update" if base is not None else None
    size = path.stat().st_size
    if args.json:
        print(
            json.dumps(
                {
                    "file": str(path),
                    "bytes": size,
                    "kind": kind or "model",
                    "base": base,
                    "metadata": meta,
                    "tensors": rows,
                },
                indent=2,
            )
        )
        return 0
    print(f"{path}: {size:,} bytes, {len(rows)} tensors")
    if kind == "update":
        print(f"an update: decode it with `nncabac patch` against the base {base}")
    print(
        f"{'tensor':40} {'shape':>18} {'dtype':>8} {'method':>9} {'qp':>5} {'bytes':>10} "
        f"{'bits/w':>7} {'ratio':>7}"
    )
    for e in rows:
        if e["alias_of"]:
            print(f"{e['name'][:40]:40} {'(shares ' + e['alias_of'] + ')':>18}")
            continue
        report = models.TensorReport(
            e["name"], tuple(e["shape"]), e["dtype"], e["method"], e["qp"], e["length"]
        )
        qp = str(e["qp"]) if e["method"] in ("uniform", "rdoq", "trellis") else "-"
        print(
            f"{e['name'][:40]:40} {str(tuple(e['shape'])):>18} {e['dtype']:>8} {e['method']:>9} "
            f"{qp:>5} {e['length']:>10,} {report.bits_per_weight:>7.3f} {report.ratio:>7.1f}"
        )
    return 0


def _load_model(path: Path) -> Any:
    """A model file as a state dict: an nncabac container is decoded, others are read."""
    from . import models

    if not path.exists():
        raise FileNotFoundError(f"no such file: {path}")
    if path.suffix == ".nncabac":
        return models.decompress(path, framework="np")
    return path


def _diff(args: argparse.Namespace) -> int:
    from .update import UpdateCoder

    base, new = _load_model(Path(args.base)), _load_model(Path(args.new))
    coder = UpdateCoder(
        qp=args.qp,
        method=args.method,
        keep=args.keep,
        structured=args.structured,
        scaling=args.scaling,
        error_feedback=False,
    )
    sent = coder.encode(new, base)
    out = Path(args.output)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_bytes(sent.data)
    tmp.replace(out)
    n = sum(int(v.size) for v in sent.state.values())
    print(
        f"{args.new} against {args.base} -> {out}: {len(sent.data):,} bytes "
        f"({8 * len(sent.data) / max(n, 1):.4f} bits/weight), base {sent.base_sha256[:16]}"
    )
    return 0


def _patch(args: argparse.Namespace) -> int:
    from . import safetensors_io
    from .update import read_update

    update = Path(args.update)
    if not update.exists():
        raise FileNotFoundError(f"no such file: {update}")
    result = read_update(update.read_bytes(), _load_model(Path(args.base)))
    out = Path(args.output)
    if out.suffix == ".safetensors":
        safetensors_io.save(out, result.state, result.dtypes, {"format": "pt"})
    elif out.suffix in (".pt", ".pth", ".bin"):
        import torch

        torch.save(result.torch_state(), out)
    else:
        raise ValueError(f"{out}: choose a .safetensors or .pt output")
    print(f"{args.base} + {update} -> {out}: {len(result.state)} tensors")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from . import demo

    rows, cols = args.rows, args.cols
    print(
        f"nncabac demo: Laplacian levels of a {rows}x{cols} layer (scale {args.scale}), "
        "CABAC with NNCodec's default parameters"
    )
    report = demo.run((rows, cols), args.scale, args.seed)
    for line in report.lines():
        print("  " + line)
    if args.no_model:
        return 0 if report.exact else 1
    base, results = demo.run_model()
    print()
    print(
        "nncabac demo: the digits CNN that ships with nncabac (38,282 fp32 weights, "
        f"{38282 * 4:,} bytes), test accuracy {100 * base:.2f} %"
    )
    print(
        f"  {'setting':38} {'bytes':>8} {'ratio':>7} {'bits/w':>7} {'accuracy':>9} "
        f"{'compress':>9} {'decompress':>10}"
    )
    for r in results:
        print(
            f"  {r.setting:38} {r.num_bytes:>8,} {r.ratio:>6.1f}x "
            f"{r.bits_per_weight:>7.3f} "
            f"{100 * r.accuracy:>8.2f}% {1000 * r.compress_s:>7.1f}ms "
            f"{1000 * r.decompress_s:>8.1f}ms"
        )
    return 0 if report.exact else 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nncabac", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("compress", help="compress a .safetensors/.pt file or a model folder")
    p.add_argument("input")
    p.add_argument("output")
    p.add_argument("--qp", type=int, default=None, help="quantization parameter (default -38)")
    p.add_argument(
        "--bits-per-weight",
        type=float,
        default=None,
        help="choose the finest qp that meets this size",
    )
    p.add_argument("--method", choices=["uniform", "rdoq", "trellis"], default="trellis")
    p.add_argument(
        "--lambda",
        dest="lambda_",
        type=float,
        default=None,
        help="rate-distortion trade-off (default 1 for rdoq/trellis)",
    )
    p.add_argument(
        "--num-gtx-flags",
        type=int,
        default=None,
        help="CABAC greater-than flags of every tensor (default: chosen per tensor; 11 codes "
        "as NNCodec does)",
    )
    p.add_argument("--workers", type=int, default=None, help="threads (default: all cores)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("-v", "--verbose", action="store_true", help="print the per-tensor table")
    p.set_defaults(func=_compress)

    p = sub.add_parser("decompress", help="decode to .safetensors or .pt (or a model folder)")
    p.add_argument("input")
    p.add_argument("output")
    p.set_defaults(func=_decompress)

    p = sub.add_parser("info", help="per-tensor table of a compressed file")
    p.add_argument("file")
    p.add_argument("--json", action="store_true")
    p.add_argument("--verify", action="store_true", help="also decode and check every payload")
    p.set_defaults(func=_info)

    p = sub.add_parser("diff", help="code NEW as an update to BASE (what a receiver holds)")
    p.add_argument("base", help="the model the receiver holds (.safetensors, .pt, .nncabac)")
    p.add_argument("new", help="the model to send")
    p.add_argument("output", help="the update file")
    p.add_argument("--qp", type=int, default=-38, help="quantization parameter (default -38)")
    p.add_argument("--method", choices=["uniform", "rdoq", "trellis"], default="trellis")
    p.add_argument("--keep", type=float, default=None, help="fraction of entries sent per tensor")
    p.add_argument("--structured", action="store_true", help="sparsify whole filters")
    p.add_argument("--scaling", action="store_true", help="send per-filter scale factors")
    p.set_defaults(func=_diff)

    p = sub.add_parser("patch", help="rebuild a model from BASE and an update")
    p.add_argument("base")
    p.add_argument("update")
    p.add_argument("output", help=".safetensors or .pt")
    p.set_defaults(func=_patch)

    p = sub.add_parser("demo", help="encode and decode a realistic 1M-weight layer")
    p.add_argument("--rows", type=int, default=1024)
    p.add_argument("--cols", type=int, default=1024)
    p.add_argument("--scale", type=float, default=0.55, help="Laplace scale of the levels")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-model", action="store_true", help="skip the digits CNN part")
    p.set_defaults(func=_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        print("nncabac: interrupted", file=sys.stderr)
        return 130
    except (ValueError, OSError, KeyError, RuntimeError, pickle.UnpicklingError) as exc:
        print(f"nncabac: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
