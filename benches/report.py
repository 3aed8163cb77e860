"""Collects the headline figures of the benchmark results (``benches/results/*.md``) into one
summary table in README.md, between ``<!-- results:start -->`` and ``<!-- results:end -->``.

    python benches/report.py            # rewrite the README section
    python benches/report.py --print    # print the table instead

Run it after any benchmark. It only reads the result files the benchmarks wrote (nothing is
measured here), so the table always says what the latest results say. Files it knows get
dedicated rows (coder.md, quant_speed.md, quant_rd.md, models.md, fl.md); any other result
file contributes the lines it marks as ``<!-- headline: WHAT | FIGURE -->`` (or
``WHAT: FIGURE``), else a link with its title.
A figure missing from its file (an older or partial run) is left out, never invented.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benches" / "results"
README = ROOT / "README.md"
START, END = "<!-- results:start -->", "<!-- results:end -->"

Row = tuple[str, str, str]  # (what, figure, source)


def tables(text: str) -> Iterator[tuple[str, list[dict[str, str]]]]:
    """Every Markdown table of ``text`` as (the last heading above it, rows as dicts)."""
    heading = ""
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("#"):
            heading = line.lstrip("#").strip()
        if line.startswith("|") and i + 1 < len(lines) and re.match(r"^\|[-:| ]+\|$", lines[i + 1]):
            header = _cells(line)
            rows = []
            i += 2
            while i < len(lines) and lines[i].startswith("|"):
                rows.append(dict(zip(header, _cells(lines[i]))))
                i += 1
            yield heading, rows
            continue
        i += 1


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def _num(cell: str) -> float | None:
    m = re.search(r"[-+−]?\d[\d,]*(?:\.\d+)?", cell)
    if not m:
        return None
    return float(m.group(0).replace(",", "").replace("−", "-"))


def _span(values: list[float], fmt: str, unit: str = "") -> str:
    lo, hi = min(values), max(values)
    if f"{lo:{fmt}}" == f"{hi:{fmt}}":
        return f"{lo:{fmt}}{unit}"
    return f"{lo:{fmt}}–{hi:{fmt}}{unit}"


def _column(rows: list[dict[str, str]], name: str) -> list[float]:
    return [v for r in rows if (v := _num(r.get(name, ""))) is not None]


def _link(name: str) -> str:
    return f"[{name}](benches/results/{name})"


# ---------------------------------------------------------------------------------------------
# One extractor per known result file
# ---------------------------------------------------------------------------------------------


def coder(text: str) -> list[Row]:
    rows = [r for _, t in tables(text) for r in t if "dec Mw/s" in r]
    if not rows:
        return []
    src = _link("coder.md")
    sizes = sorted({r["weights"] for r in rows}, key=lambda s: _num(s) or 0)
    what = f"Coder, one thread ({' and '.join(sizes)} Laplacian levels)"
    out = []
    for opt in ("0", "1"):
        enc = _column([r for r in rows if r.get("opt") == opt], "enc Mw/s")
        if enc:
            out.append((f"{what}: encode, param_opt {opt}", _span(enc, ".0f", " M weights/s"), src))
    out.append((f"{what}: decode", _span(_column(rows, "dec Mw/s"), ".0f", " M weights/s"), src))
    enc, dec = _column(rows, "enc ratio"), _column(rows, "dec ratio")
    if enc and dec:
        out.append(
            (
                "Coder against NNCodec, same levels, same run",
                f"encode {_span(enc, '.1f', '×')}, decode {_span(dec, '.1f', '×')} faster",
                src,
            )
        )
    same = [r.get("bytes identical", "") for r in rows]
    if any(same):
        out.append(
            (
                "Coder streams byte-identical to NNCodec's",
                f"{same.count('yes')}/{len(same)} configurations",
                src,
            )
        )
    return out


def quant_speed(text: str) -> list[Row]:
    rows = [r for _, t in tables(text) for r in t if "speed-up" in r and _num(r["speed-up"])]
    if not rows:
        return []
    top = max(_num(r["weights"]) or 0 for r in rows)
    rows = [r for r in rows if _num(r["weights"]) == top]
    parts = [f"{r['quantizer'].split(' (')[0]} {r['speed-up']}" for r in rows]
    same = [r.get("levels identical", "") for r in rows]
    out = [
        (
            f"Quantizers against NNCodec's quantLayer ({top:,.0f} weights, one thread)",
            "; ".join(parts),
            _link("quant_speed.md"),
        )
    ]
    if any(same):
        out.append(
            (
                "Quantized levels identical to NNCodec's (speed bench inputs)",
                f"{same.count('yes')}/{len(same)} quantizers",
                _link("quant_speed.md"),
            )
        )
    return out


def quant_rd(text: str) -> list[Row]:
    out = []
    for heading, rows in tables(text):  # one BD-rate table under each model's section
        for r in rows:
            if r.get("test vs anchor") == "trellis λ=1 vs uniform" and "MSE (dB)" in r:
                model = heading.split(" (")[0]
                what = f"Trellis λ 1 against uniform, BD-rate at equal MSE ({model})"
                out.append((what, r["MSE (dB)"], _link("quant_rd.md")))
    checks = re.findall(r"(\d+)/(\d+) tensor levels identical", text)
    if checks:
        got = sum(int(a) for a, _ in checks)
        total = sum(int(b) for _, b in checks)
        out.append(
            (
                "Quantized levels identical to NNCodec's (RD sweeps, every tensor and qp)",
                f"{got:,}/{total:,}",
                _link("quant_rd.md"),
            )
        )
    return out


def models(text: str) -> list[Row]:
    rows = [r for _, t in tables(text) for r in t if "compress speed-up" in r]
    if not rows:
        return []
    src = _link("models.md")
    out = []
    for model in dict.fromkeys(r["model"] for r in rows):
        mine = [r for r in rows if r["model"] == model]
        comp, decomp = _column(mine, "compress speed-up"), _column(mine, "decompress speed-up")
        size = _column(mine, "size ours/NNCodec")
        figure = (
            f"compress {_span(comp, '.1f', '×')}, decompress {_span(decomp, '.1f', '×')} faster"
        )
        if size:
            figure += f"; size {_span(size, '.3f')}× NNCodec's"
        out.append((f"Whole model against NNCodec's nnc.compress: {model}", figure, src))
    default = [r for r in rows if "ResNet" in r["model"] and "default" in r.get("setting", "")]
    bytes_rows = [
        r
        for _, t in tables(text)
        for r in t
        if r.get("codec") == "nncabac"
        and "ResNet" in r.get("model", "")
        and "default" in r.get("setting", "")
    ]
    if default and bytes_rows:
        b = bytes_rows[0]
        out.append(
            (
                "ResNet-56 at NNCodec's defaults (trellis qp −38)",
                f"{b['bytes']} bytes ({b['×fp32']}× smaller than fp32), {b['metric']}",
                src,
            )
        )
    return out


def fl(text: str) -> list[Row]:
    return generic("fl.md", text)


def headline_lines(text: str) -> list[str]:
    return [m.strip() for m in re.findall(r"<!--\s*headline:\s*(.+?)\s*-->", text)]


def _split(line: str) -> tuple[str, str]:
    """A headline as (what, figure): split at " | ", else at the first ": "."""
    for sep in (" | ", ": "):
        if sep in line:
            what, figure = line.split(sep, 1)
            return what.strip(), figure.strip()
    return line, ""


def generic(name: str, text: str) -> list[Row]:
    marked = headline_lines(text)
    if marked:
        return [(*_split(m), _link(name)) for m in marked]
    title = next((ln.lstrip("#").strip() for ln in text.splitlines() if ln.startswith("# ")), name)
    return [(title, "see the file", _link(name))]


KNOWN: dict[str, Callable[[str], list[Row]]] = {
    "coder.md": coder,
    "quant_speed.md": quant_speed,
    "quant_rd.md": quant_rd,
    "models.md": models,
    "fl.md": fl,
}


def collect() -> list[Row]:
    rows: list[Row] = []
    files = {p.name: p for p in sorted(RESULTS.glob("*.md"))}
    for name in list(KNOWN) + sorted(set(files) - set(KNOWN)):
        if name not in files:
            continue
        text = files[name].read_text(encoding="utf-8")
        extract = KNOWN.get(name)
        rows += extract(text) if extract else generic(name, text)
    return rows


def render(rows: list[Row]) -> str:
    lines = [
        "| result | figure | source |",
        "|---|---|---|",
        *(f"| {what} | {fig} | {src} |" for what, fig, src in rows),
        "",
        "Regenerated from `benches/results/*.md` by `python benches/report.py`; each source file "
        "says how it was measured (machine, repeats, medians).",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--print", action="store_true", help="print the table instead")
    args = ap.parse_args()
    table = render(collect())
    if args.print:
        print(table, end="")
        return
    text = README.read_text(encoding="utf-8")
    if START not in text or END not in text:
        raise SystemExit(f"README.md has no {START} ... {END} section")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    README.write_text(head + START + "\n" + table + END + tail, encoding="utf-8")
    print(f"README.md: {table.count(chr(10) + '| ')} result rows")


if __name__ == "__main__":
    main()
