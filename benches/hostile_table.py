"""Hostile-input table: feeds malformed streams and files to every decoding entry point of the
Python API and records what each does, with its time and peak memory.

    python benches/hostile_table.py            # writes the table into docs/hostile-inputs.md
    python benches/hostile_table.py --print    # prints it instead
    python benches/hostile_table.py --check    # exit 1 if its results differ from the table

Each input runs in a fresh interpreter, so a crash (abort, segfault), a hang (timeout) or a panic
crossing into Python is recorded as such instead of ending the run; peak memory is the growth of
that process's resident set (VmHWM, reset just before the call). The container inputs are built
from files the writer produces, patched at positions found by comparing two written files, so
they follow the format (``docs/format.md``) without restating its layout here; the header CRC is
recomputed wherever a case must get past it.
"""

from __future__ import annotations

import argparse
import ctypes
import difflib
import gc
import json
import pickle
import resource
import subprocess
import sys
import tempfile
import time
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import nncabac
from nncabac import _nncabac, nnc

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
from hostile_files import claiming_1e12_elements, fix_header_crc  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "hostile-inputs.md"
START, END = "<!-- hostile-table:start -->", "<!-- hostile-table:end -->"
TIMEOUT_S = 120
PARAMS = dict(dq_flag=1, num_gtx_flags=11, general_profile_idc=1, parent_node_id_present_flag=0)

# What a case may do. "error" is any nncabac.NncabacError; "ok" a normal return.
DECODE = ("DecodeError",)
PARAM = ("ParameterError",)
TYPED = ("DecodeError", "ParameterError", "RangeError", "NncabacError", "BaseMismatchError")
OK_OR_DECODE = ("ok", "DecodeError")


@dataclass
class Case:
    group: str
    name: str
    api: str
    expected: tuple[str, ...]
    data: Any = b""
    kwargs: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------
# Building the inputs
# ---------------------------------------------------------------------------------------------


def _layer_stream(n: int, seed: int = 0) -> tuple[bytes, tuple[int, ...]]:
    rng = np.random.default_rng(seed)
    levels = np.round(rng.laplace(0, 1.5, (n // 100, 100))).astype(np.int32) * 2
    enc = nnc.Encoder()
    enc.encode_layer(levels, param_opt_flag=1, **PARAMS)
    return enc.finish(), levels.shape


def _flip(data: bytes, pos: int, mask: int = 0x10) -> bytes:
    b = bytearray(data)
    b[pos] ^= mask
    return bytes(b)


def _put(data: bytes, pos: int, new: bytes) -> bytes:
    return data[:pos] + new + data[pos + len(new) :]


def _with_payload_flip(data: bytes, payload_at: int, mask: int) -> bytes:
    """``data`` with one payload byte flipped and both checksums made valid again, so that the
    flipped byte reaches the CABAC decoder. The payload's CRC is found in the header by value."""
    span = _nncabac.header_span(data[: _nncabac.PREAMBLE_LEN])
    header = _nncabac.Header(data, len(data))
    for e in header.entries():
        start = header.payload_start + e["offset"]
        if start <= payload_at < start + e["length"]:
            break
    else:
        raise RuntimeError("no payload covers that byte")
    old = int(e["crc32"]).to_bytes(4, "little")
    head = data[: span - 4]
    crc_at = head.find(old, _nncabac.PREAMBLE_LEN)
    if crc_at < 0 or head.count(old) != 1:
        raise RuntimeError("the payload CRC is not stored once in the header")
    flipped = _flip(data, payload_at, mask)
    crc = zlib.crc32(flipped[start : start + e["length"]]) & 0xFFFFFFFF
    return fix_header_crc(_put(flipped, crc_at, crc.to_bytes(4, "little")))


def _model() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    return {
        "conv.weight": rng.normal(0, 0.1, (16, 8, 3, 3)).astype(np.float32),
        "conv.bias": rng.normal(0, 0.1, 16).astype(np.float32),
        "fc.weight": rng.normal(0, 0.1, (10, 64)).astype(np.float32),
        "fc.bias": np.zeros(10, np.float32),
        "steps": np.array([12345], np.int64),
    }


def _model_file(tmp: Path) -> bytes:
    path = tmp / "model.nncabac"
    nncabac.compress(_model(), path, workers=1)
    return path.read_bytes()


def build_cases(tmp: Path) -> list[Case]:
    cases: list[Case] = []
    rng = np.random.default_rng(2024)

    def add(
        group: str, name: str, api: str, expected: tuple[str, ...], data: Any = b"", **kw: Any
    ) -> None:
        cases.append(Case(group, name, api, expected, data, kw))

    # --- layer decoder (nncabac.nnc.Decoder), the conformance-level API -----------------------
    g = "Layer streams (`nnc.Decoder.decode_layer`)"
    stream, shape = _layer_stream(100_000)
    add(g, "valid stream, 100,000 levels (reference row)", "layer", ("ok",), stream, shape=shape)
    add(g, "empty input", "layer", DECODE, b"", shape=(10,))
    add(g, "one byte", "layer", DECODE, b"\x00", shape=(10,))
    add(g, "truncated to half", "layer", DECODE, stream[: len(stream) // 2], shape=shape)
    add(g, "truncated by one byte", "layer", DECODE, stream[:-1], shape=shape)
    add(
        g,
        "1 bit flipped in the middle",
        "layer",
        OK_OR_DECODE,
        _flip(stream, len(stream) // 2),
        shape=shape,
    )
    add(g, "first byte flipped", "layer", OK_OR_DECODE, _flip(stream, 0, 0x80), shape=shape)
    add(g, "64 KiB of random bytes, 10^6 levels", "layer", DECODE, rng.bytes(65536), shape=(10**6,))
    add(g, "1 KiB of 0xFF, 10^8 levels", "layer", DECODE, b"\xff" * 1024, shape=(10**8,))
    add(g, "1 MiB of 0xFF, 10^9 levels", "layer", DECODE, b"\xff" * (1 << 20), shape=(10**9,))
    add(g, "1 KiB of 0x00, 10^9 levels", "layer", DECODE, bytes(1024), shape=(10**9,))
    add(g, "4-byte stream, shape (10^6, 10^6)", "layer", DECODE, stream[:4], shape=(10**6, 10**6))
    add(
        g,
        "shape (2^40, 2^40) (element count overflows)",
        "layer",
        PARAM,
        stream,
        shape=(2**40, 2**40),
    )
    add(g, "shape (5, 0) (layer_width 0)", "layer", PARAM, stream, shape=(5, 0))
    add(g, "negative dimension (-1, 100)", "layer", PARAM, stream, shape=(-1, 100))
    add(g, "num_gtx_flags = 0", "layer", PARAM, stream, shape=shape, num_gtx_flags=0)
    add(g, "num_gtx_flags = 10^9", "layer", PARAM, stream, shape=shape, num_gtx_flags=10**9)
    add(g, "num_gtx_flags = 2^40", "layer", PARAM, stream, shape=shape, num_gtx_flags=2**40)
    add(g, "dq_flag = 2", "layer", PARAM, stream, shape=shape, dq_flag=2)
    add(g, "general_profile_idc = 7", "layer", PARAM, stream, shape=shape, general_profile_idc=7)
    add(g, "scan_order = 1", "layer", PARAM, stream, shape=shape, scan_order=1)
    add(g, "`decode_signed(0)` / field width 0", "field", PARAM, stream, bits=0)
    add(g, "`decode_unsigned(33)` / field width 33", "field", PARAM, stream, bits=33, unsigned=True)
    add(g, "valid stream, `finish()` before the last layer", "finish_early", DECODE, stream)

    # --- one-tensor containers (decode_tensor / tensor_info) -----------------------------------
    g = "One-tensor files (`decode_tensor`)"
    w = rng.normal(0, 0.1, (64, 64)).astype(np.float32)
    t = nncabac.encode_tensor(w)
    span = _nncabac.header_span(t[: _nncabac.PREAMBLE_LEN])
    add(g, "valid file (reference row)", "tensor", ("ok",), t)
    add(g, "empty input", "tensor", DECODE, b"")
    add(g, "preamble only", "tensor", DECODE, t[: _nncabac.PREAMBLE_LEN])
    add(g, "wrong magic", "tensor", DECODE, _flip(t, 0, 0x20))
    add(g, "major version 99", "tensor", DECODE, _put(t, 8, (99).to_bytes(2, "little")))
    add(
        g,
        "minor version 7 (newer minor: readable)",
        "tensor",
        ("ok",),
        fix_header_crc(_put(t, 10, (7).to_bytes(2, "little"))),
    )
    add(
        g,
        "header length 2^32 - 1 (over the 256 MiB limit)",
        "tensor",
        DECODE,
        _put(t, 12, b"\xff\xff\xff\xff"),
    )
    add(
        g,
        "header length 1 MiB in a small file",
        "tensor",
        DECODE,
        _put(t, 12, (1 << 20).to_bytes(4, "little")),
    )
    add(
        g,
        "header byte flipped (header CRC mismatch)",
        "tensor",
        DECODE,
        _flip(t, _nncabac.PREAMBLE_LEN + 1),
    )
    add(g, "header CRC flipped", "tensor", DECODE, _flip(t, span - 2))
    add(g, "payload byte flipped (payload CRC mismatch)", "tensor", DECODE, _flip(t, len(t) - 3))
    add(
        g,
        "payload byte flipped, both CRCs fixed (reaches the CABAC decoder)",
        "tensor",
        OK_OR_DECODE,
        _with_payload_flip(t, span + 5, 0x04),
    )
    add(g, "truncated by one byte", "tensor", DECODE, t[:-1])
    add(g, "truncated inside the header", "tensor", DECODE, t[: span - 6])
    add(g, "10 bytes of trailing garbage", "tensor", OK_OR_DECODE, t + rng.bytes(10))
    add(
        g,
        "header claims 10^12 elements, coded payload of a few bytes",
        "tensor",
        DECODE,
        claiming_1e12_elements("uniform"),
    )
    add(
        g,
        "header claims 10^12 elements, raw payload of 0 bytes",
        "tensor",
        DECODE,
        claiming_1e12_elements("raw"),
    )
    add(g, "4 KiB of random bytes", "tensor", DECODE, rng.bytes(4096))
    add(
        g,
        "valid preamble + 4 KiB of random bytes",
        "tensor",
        DECODE,
        t[: _nncabac.PREAMBLE_LEN] + rng.bytes(4096),
    )
    add(
        g,
        "`tensor_info` on a flipped payload (no decoding; CRC checked)",
        "info",
        DECODE,
        _flip(t, len(t) - 3),
    )

    # --- whole-model files (decompress / safe_open) and updates -----------------------------------
    g = "Model files (`decompress`, `safe_open`) and updates (`decode_update`)"
    m = _model_file(tmp)
    mspan = _nncabac.header_span(m[: _nncabac.PREAMBLE_LEN])
    add(g, "valid 5-tensor file, `decompress` (reference row)", "model", ("ok",), m)
    add(g, "valid 5-tensor file, `safe_open` (reference row)", "lazy", ("ok",), m)
    add(g, "`decompress`: empty file", "model", DECODE, b"")
    add(g, "`decompress`: truncated to half", "model", DECODE, m[: len(m) // 2])
    add(g, "`decompress`: last payload byte flipped", "model", DECODE, _flip(m, len(m) - 1))
    add(
        g,
        "`decompress`: header byte flipped, CRC fixed",
        "model",
        TYPED + ("ok",),
        fix_header_crc(_flip(m, mspan - 8, 0x01)),
    )
    add(
        g,
        "`safe_open`: last payload byte flipped (other tensors still readable)",
        "lazy",
        DECODE,
        _flip(m, len(m) - 1),
    )
    add(g, "`safe_open`: header length 2^32 - 1", "lazy", DECODE, _put(m, 12, b"\xff\xff\xff\xff"))
    update = nncabac.encode_update(
        {k: v + 0.01 for k, v in _model().items() if k != "steps"} | {"steps": _model()["steps"]},
        _model(),
    )
    add(g, "`decode_update`: valid update (reference row)", "update", ("ok",), update)
    add(g, "`decode_update`: truncated", "update", DECODE, update[:-5])
    add(g, "`decode_update`: random bytes", "update", DECODE, rng.bytes(2048))
    add(g, "`decode_update`: a model file instead of an update", "update", TYPED, m)

    # --- sweeps --------------------------------------------------------------------------------
    g = "Sweeps (counts of outcomes; time and memory are the worst case)"
    variants = []
    for pos in range(_nncabac.PREAMBLE_LEN, mspan - 4):
        for new in {0x00, 0xFF, 0x7F, m[pos] ^ 0x01, m[pos] ^ 0x80}:
            variants.append(fix_header_crc(_put(m, pos, bytes([new]))))
    add(
        g,
        f"every header byte of the model file set to 00/FF/7F/^01/^80, CRC fixed "
        f"({len(variants)} files)",
        "sweep",
        TYPED + ("ok",),
        variants,
        inner="model_bytes",
    )
    flips = [
        _with_payload_flip(
            t, span + int(rng.integers(0, len(t) - span)), 1 << int(rng.integers(0, 8))
        )
        for _ in range(300)
    ]
    add(
        g,
        f"random payload bit flips with both CRCs fixed ({len(flips)} files)",
        "sweep",
        OK_OR_DECODE,
        flips,
        inner="tensor",
    )
    cuts = [t[:i] for i in range(len(t))]
    add(
        g,
        f"every truncation of a one-tensor file ({len(cuts)} files)",
        "sweep",
        DECODE,
        cuts,
        inner="tensor",
    )
    garbage = [rng.bytes(int(rng.integers(0, 512))) for _ in range(300)]
    add(
        g,
        f"random garbage, 0-511 bytes ({len(garbage)} files)",
        "sweep",
        DECODE,
        garbage,
        inner="tensor",
    )
    layer_garbage = [rng.bytes(int(rng.integers(0, 256))) for _ in range(300)]
    add(
        g,
        f"random layer streams, 0-255 bytes, 10^4 levels ({len(layer_garbage)} streams)",
        "sweep",
        DECODE,
        layer_garbage,
        inner="layer",
        shape=(100, 100),
    )
    return cases


# ---------------------------------------------------------------------------------------------
# Running one case (in a child interpreter)
# ---------------------------------------------------------------------------------------------


def _call(api: str, data: Any, kw: dict[str, Any], tmp: Path) -> None:
    if api == "layer":
        params = dict(PARAMS)
        params.update({k: v for k, v in kw.items() if k != "shape"})
        dec = nnc.Decoder(data)
        dec.decode_layer(list(kw["shape"]), **params)
        dec.finish()
    elif api == "field":
        dec = nnc.Decoder(data)
        if kw.get("unsigned"):
            dec.decode_unsigned(kw["bits"])
        else:
            dec.decode_signed(kw["bits"])
    elif api == "finish_early":
        nnc.Decoder(data).finish()
    elif api == "tensor":
        nncabac.decode_tensor(data)
    elif api == "info":
        nncabac.tensor_info(data)
    elif api in ("model", "model_bytes"):
        path = tmp / "case.nncabac"
        path.write_bytes(data)
        nncabac.decompress(path, framework="np", workers=1)
    elif api == "lazy":
        path = tmp / "case.nncabac"
        path.write_bytes(data)
        errors = []
        with nncabac.safe_open(path, framework="np") as f:
            for k in f.keys():
                try:
                    f.get_tensor(k)
                except nncabac.NncabacError as exc:
                    errors.append(exc)
        if errors:
            raise errors[0]
    elif api == "update":
        nncabac.decode_update(data, _model())
    else:
        raise ValueError(api)


def _outcome(exc: BaseException | None) -> tuple[str, str]:
    if exc is None:
        return "ok", ""
    kind = type(exc).__name__
    if not isinstance(exc, nncabac.NncabacError):
        kind = f"UNTYPED {kind}"
    return kind, str(exc).splitlines()[0] if str(exc) else ""


def _reset_peak() -> int:
    """Returns freed memory to the system, resets the peak resident set (VmHWM) and returns the
    current one, in bytes."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass
    return _status("VmRSS")


def _status(key: str) -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def run_child(case_path: str) -> None:
    with open(case_path, "rb") as f:
        case: Case = pickle.load(f)
    tmp = Path(tempfile.mkdtemp())
    result: dict[str, Any] = {}
    if case.api == "sweep":
        api = case.kwargs["inner"]
        kw = {k: v for k, v in case.kwargs.items() if k != "inner"}
        counts: Counter[str] = Counter()
        examples: dict[str, str] = {}
        worst = 0.0
        base = _reset_peak()
        for data in case.data:
            t = time.perf_counter()
            exc: BaseException | None = None
            try:
                _call(api, data, kw, tmp)
            except BaseException as e:  # noqa: BLE001 - a panic arrives as a BaseException
                exc = e
            worst = max(worst, time.perf_counter() - t)
            kind, msg = _outcome(exc)
            counts[kind] += 1
            examples.setdefault(kind, msg)
        result = dict(counts=dict(counts), examples=examples, seconds=worst)
    else:
        base = _reset_peak()
        t = time.perf_counter()
        exc = None
        try:
            _call(case.api, case.data, case.kwargs, tmp)
        except BaseException as e:  # noqa: BLE001
            exc = e
        kind, msg = _outcome(exc)
        result = dict(kind=kind, message=msg, seconds=time.perf_counter() - t)
    result["peak_bytes"] = max(0, _status("VmHWM") - base)
    print("RESULT " + json.dumps(result))


# ---------------------------------------------------------------------------------------------
# The table
# ---------------------------------------------------------------------------------------------


def run_all(cases: list[Case], tmp: Path) -> list[dict[str, Any]]:
    results = []
    for i, case in enumerate(cases):
        path = tmp / f"case{i}.pkl"
        with open(path, "wb") as f:
            pickle.dump(case, f)
        cmd = [sys.executable, __file__, "--child", str(path)]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            res: dict[str, Any] = dict(
                kind=f"HANG (> {TIMEOUT_S} s)", message="", seconds=TIMEOUT_S
            )
        else:
            lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
            if proc.returncode != 0 or not lines:
                tail = (proc.stderr.strip().splitlines() or [""])[-1]
                res = dict(kind=f"CRASH (exit {proc.returncode})", message=tail, seconds=0.0)
            else:
                res = json.loads(lines[-1][len("RESULT ") :])
        results.append(res)
        print(f"[{i + 1}/{len(cases)}] {case.name}: {_summary(case, res)[0]}", flush=True)
    return results


def _summary(case: Case, res: dict[str, Any]) -> tuple[str, bool]:
    if "counts" in res:
        counts: dict[str, int] = res["counts"]
        good = all(k in case.expected for k in counts)
        parts = []
        for k, n in sorted(counts.items(), key=lambda x: -x[1]):
            ex = res["examples"].get(k, "")
            parts.append(f"{n} × {k}" + (f" (e.g. “{_short(ex)}”)" if ex else ""))
        return "; ".join(parts), good
    kind, msg = res["kind"], res.get("message", "")
    good = kind in case.expected
    return (f"{kind}: “{_short(msg)}”" if msg else kind), good


def _short(msg: str, limit: int = 110) -> str:
    msg = msg.replace("|", "\\|")
    return msg if len(msg) <= limit else msg[: limit - 1] + "…"


def _fmt_time(s: float) -> str:
    return f"{s * 1e3:.1f} ms" if s < 1 else f"{s:.2f} s"


def _fmt_mem(b: int) -> str:
    return f"{b / 2**20:.1f} MiB"


def render(cases: list[Case], results: list[dict[str, Any]]) -> str:
    bad = 0
    out = [
        f"Generated by `python benches/hostile_table.py` (nncabac {nncabac.__version__}, "
        f"Python {sys.version.split()[0]}, numpy {np.__version__}); do not edit by hand. Each "
        "input runs in a fresh interpreter; *time* is the decoding call, *peak* the growth of "
        "the process's resident set during it (freed memory returned to the system first; "
        "0.1 MiB is the resolution). "
        "*Expected* lists what is acceptable: an exception type, or `ok` (a normal return; for "
        "flipped bits past the checksums a different but well-formed result is fine).",
        "",
    ]
    group = None
    for case, res in zip(cases, results):
        if case.group != group:
            group = case.group
            out += [
                "",
                f"### {group}",
                "",
                "| input | expected | result | time | peak | |",
                "|---|---|---|---|---|---|",
            ]
        text, good = _summary(case, res)
        bad += not good
        exp = " or ".join(
            f"`{e}`" for e in case.expected if e not in TYPED[3:] or case.expected == TYPED
        )
        if set(TYPED) <= set(case.expected):
            exp = "a typed error" + (" or `ok`" if "ok" in case.expected else "")
        peak = _fmt_mem(res["peak_bytes"]) if "peak_bytes" in res else "-"
        mark = "✓" if good else "✗"
        out.append(
            f"| {case.name} | {exp} | {text} | {_fmt_time(res['seconds'])} | {peak} | {mark} |"
        )
    out += ["", f"{len(cases) - bad} of {len(cases)} rows as expected."]
    return "\n".join(out) + "\n"


def _outcomes(text: str) -> list[str]:
    """The rows of a rendered table without their time and memory columns (which vary from run
    to run): input, expectation, result and mark."""
    rows = []
    for line in text.splitlines():
        cells = line.split(" | ")
        if line.startswith("| ") and len(cells) == 6 and not line.startswith("| input "):
            rows.append(" | ".join(cells[:3] + cells[5:]))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--child", metavar="CASE", help=argparse.SUPPRESS)
    ap.add_argument("--print", action="store_true", help="print the table instead of writing it")
    ap.add_argument(
        "--check",
        action="store_true",
        help="exit 1 if the committed table's inputs, expectations or results differ from a "
        "new run (times and memory are not compared)",
    )
    args = ap.parse_args()
    if args.child:
        run_child(args.child)
        return
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        cases = build_cases(tmp)
        results = run_all(cases, tmp)
    table = render(cases, results)
    if args.print:
        print(table)
        return
    if args.check:
        committed = _outcomes(DOC.read_text() if DOC.exists() else "")
        fresh = _outcomes(table)
        if committed != fresh:
            diff = difflib.unified_diff(committed, fresh, "committed", "this run", lineterm="")
            print("\n".join(diff))
            sys.exit(f"{DOC.name} is out of date: run `python benches/hostile_table.py`")
        print(f"{DOC.name}: all {len(fresh)} rows as committed")
        return
    text = DOC.read_text() if DOC.exists() else f"# Hostile inputs\n\n{START}\n{END}\n"
    if START not in text or END not in text:
        text = text.rstrip() + f"\n\n{START}\n{END}\n"
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    DOC.write_text(head + START + "\n" + table + END + tail)
    print(f"written to {DOC}")


if __name__ == "__main__":
    main()
