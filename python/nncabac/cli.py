"""The ``nncabac`` command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


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
    return 0 if report.exact else 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="nncabac", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("demo", help="encode and decode a realistic 1M-weight layer")
    p.add_argument("--rows", type=int, default=1024)
    p.add_argument("--cols", type=int, default=1024)
    p.add_argument("--scale", type=float, default=0.55, help="Laplace scale of the levels")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_demo)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except (ValueError, OSError) as exc:
        print(f"nncabac: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
