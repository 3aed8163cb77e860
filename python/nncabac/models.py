"""Whole models: compress a torch module, a state dict or a weights file into one nncabac
container, get it back, or read single tensors lazily.

>>> import numpy as np, nncabac, tempfile, os
>>> sd = {"fc.weight": np.random.default_rng(0).normal(0, .05, (32, 16)).astype(np.float32),
...       "fc.bias": np.zeros(32, np.float32), "steps": np.array(7, dtype=np.int64)}
>>> path = os.path.join(tempfile.mkdtemp(), "m.nncabac")
>>> report = nncabac.compress(sd, path, qp=-36, method="trellis")
>>> out = nncabac.decompress(path, framework="np")
>>> sorted(out), out["steps"].item(), out["fc.weight"].dtype
(['fc.bias', 'fc.weight', 'steps'], 7, dtype('float32'))
>>> with nncabac.safe_open(path) as f:
...     f.keys(), f.get_tensor("fc.bias").shape
(['fc.weight', 'fc.bias', 'steps'], (32,))
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from . import _nncabac, safetensors_io
from ._nncabac import DecodeError, ParameterError
from .policy import Rule
from .ratecontrol import Step, code_tensors, fit_size
from .tensor import DEFAULT_QP, Method, decode_entry, finish

__all__ = [
    "CompressReport",
    "TensorReport",
    "compress",
    "compress_folder",
    "decompress",
    "load_state",
    "restore_folder",
    "safe_open",
]

Framework = Literal["pt", "np"]
_ALIASES = "nncabac.aliases"
_FRAMEWORK = "nncabac.framework"
WEIGHT_FILES = ("*.safetensors", "pytorch_model*.bin", "*.pt", "*.pth")
CONTAINER_NAME = "model.nncabac"


@dataclass(frozen=True)
class TensorReport:
    """One row of a report: how a tensor was stored."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    method: str
    qp: int | None
    num_bytes: int

    @classmethod
    def of(cls, entry: dict[str, Any], payload: bytes) -> TensorReport:
        """The row of one coded tensor (its container entry and payload)."""
        quantized = entry["method"] in ("uniform", "rdoq", "trellis")
        return cls(
            entry["name"],
            tuple(entry["shape"]),
            entry["dtype"],
            entry["method"],
            entry["qp"] if quantized else None,
            len(payload),
        )

    @property
    def bits_per_weight(self) -> float:
        n = int(np.prod(self.shape)) if self.shape else 1
        return 8 * self.num_bytes / n if n else 0.0

    @property
    def ratio(self) -> float:
        """Original size over coded size."""
        n = int(np.prod(self.shape)) if self.shape else 1
        item = 2 if self.dtype == "bfloat16" else np.dtype(self.dtype).itemsize
        return n * item / self.num_bytes if self.num_bytes else float("inf")


@dataclass
class CompressReport:
    """What :func:`compress` did."""

    path: str
    tensors: list[TensorReport]
    file_bytes: int
    original_bytes: int
    aliases: dict[str, str] = field(default_factory=dict)
    steps: list[Step] = field(default_factory=list)

    @property
    def ratio(self) -> float:
        return self.original_bytes / self.file_bytes if self.file_bytes else float("inf")

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["ratio"] = self.ratio
        for row, t in zip(d["tensors"], self.tensors):
            row["bits_per_weight"] = t.bits_per_weight
            row["ratio"] = t.ratio
        return d

    def table(self) -> str:
        """A human-readable per-tensor table with a summary line."""
        lines = [
            f"{'tensor':40} {'shape':>18} {'method':>9} {'qp':>5} {'bytes':>10} "
            f"{'bits/w':>7} {'ratio':>7}"
        ]
        for t in self.tensors:
            qp = "-" if t.qp is None else str(t.qp)
            lines.append(
                f"{t.name[:40]:40} {str(t.shape):>18} {t.method:>9} {qp:>5} "
                f"{t.num_bytes:>10,} {t.bits_per_weight:>7.3f} {t.ratio:>7.1f}"
            )
        for alias, src in self.aliases.items():
            lines.append(f"{alias[:40]:40} {'(shares ' + src + ')':>18}")
        lines.append(
            f"total: {self.original_bytes:,} -> {self.file_bytes:,} bytes "
            f"({self.ratio:.1f}x smaller)"
        )
        return "\n".join(lines)


def _is_torch(x: Any) -> bool:
    return type(x).__module__.startswith("torch")


def load_state(obj: Any) -> tuple[dict[str, Any], dict[str, str], str]:
    """A flat name → tensor mapping from a module, a state dict or a weights file path; the
    original dtype names of tensors numpy cannot hold (bfloat16); and the framework (pt/np)."""
    if isinstance(obj, (str, os.PathLike)):
        path = Path(obj)
        if not path.exists():
            raise FileNotFoundError(f"no such file: {path}")
        if path.suffix == ".safetensors":
            tensors, dtypes, _ = safetensors_io.load(path)
            return dict(tensors), {k: v for k, v in dtypes.items() if v == "bfloat16"}, "pt"
        if path.suffix in (".pt", ".pth", ".bin"):
            import torch

            sd = torch.load(path, map_location="cpu", weights_only=True)
            if not isinstance(sd, Mapping):
                raise ParameterError(f"{path}: expected a state dict, found {type(sd).__name__}")
            return load_state(sd)
        raise ParameterError(f"{path}: unsupported file type (use .safetensors, .pt or .bin)")
    if hasattr(obj, "state_dict") and callable(obj.state_dict):
        return load_state(obj.state_dict())
    if isinstance(obj, Mapping):
        state = {str(k): v for k, v in obj.items()}
        framework = "pt" if any(_is_torch(v) for v in state.values()) else "np"
        return state, {}, framework
    raise ParameterError(f"cannot compress a {type(obj).__name__}")


def _aliases(state: Mapping[str, Any]) -> dict[str, str]:
    """Names whose tensor is the same storage view as an earlier name's (tied weights)."""
    seen: dict[tuple[Any, ...], str] = {}
    aliases: dict[str, str] = {}
    for name, x in state.items():
        if _is_torch(x):
            if x.numel() == 0:
                continue
            key: tuple[Any, ...] = (
                "pt",
                x.data_ptr(),
                tuple(x.shape),
                tuple(x.stride()),
                str(x.dtype),
            )
        elif isinstance(x, np.ndarray) and x.size:
            key = ("np", x.__array_interface__["data"][0], x.shape, x.strides, x.dtype.str)
        else:
            continue
        if key in seen:
            aliases[name] = seen[key]
        else:
            seen[key] = name
    return aliases


def compress(
    obj: Any,
    path: str | os.PathLike[str],
    *,
    qp: int | None = None,
    bits_per_weight: float | None = None,
    method: Method = "trellis",
    lambda_: float | None = None,
    importance: Mapping[str, Any] | None = None,
    rule: Rule | None = None,
    metadata: Mapping[str, str] | None = None,
    workers: int | None = None,
    on_step: Callable[[Step], None] | None = None,
    num_gtx_flags: int | None = None,
) -> CompressReport:
    """Compress a torch module, a state dict (torch or numpy) or a ``.safetensors``/``.pt`` file.

    The quantized tensors use ``qp`` (default −38), or the finest qp that meets
    ``bits_per_weight`` over the whole model. ``method``, ``lambda_``, ``importance`` and
    ``num_gtx_flags`` are as in :func:`nncabac.encode_tensor`; ``rule`` overrides the policy
    (:mod:`nncabac.policy`) that keeps integer buffers, normalization statistics and tiny
    tensors exact. Tied tensors are stored once. Tensors are coded in parallel on all cores.
    """
    state, dtypes, framework = load_state(obj)
    aliases = _aliases(state)
    unique = {k: v for k, v in state.items() if k not in aliases}
    coding: dict[str, Any] = dict(
        method=method,
        lambda_=lambda_,
        importance=importance,
        rule=rule,
        workers=workers,
        dtypes=dtypes,
        num_gtx_flags=num_gtx_flags,
    )
    steps: list[Step] = []
    if bits_per_weight is not None:
        if qp is not None:
            raise ParameterError("give qp or bits_per_weight, not both")
        fit = fit_size(unique, target_bits_per_weight=bits_per_weight, on_step=on_step, **coding)
        coded, steps = fit.payloads, fit.steps
    else:
        coded = code_tensors(unique, DEFAULT_QP if qp is None else qp, **coding)
    meta = dict(metadata or {})
    meta[_FRAMEWORK] = framework
    if aliases:
        meta[_ALIASES] = json.dumps(aliases)
    entries = list(coded.values())
    size = _write_container(path, sorted(meta.items()), entries)
    rows = [TensorReport.of(e, p) for e, p in entries]
    original = sum(_nbytes(v, dtypes.get(k)) for k, v in unique.items())
    return CompressReport(os.fspath(path), rows, size, original, aliases, steps)


def _write_container(
    path: str | os.PathLike[str],
    metadata: list[tuple[str, str]],
    entries: list[tuple[dict[str, Any], bytes]],
) -> int:
    """Write the container of ``entries`` to ``path`` (through a temporary file, replaced at the
    end) and return its size. The header comes from Rust; the payloads are written from the
    buffers already held, so the file is never assembled in memory (that took two more copies
    of every payload)."""
    prefix = _nncabac.container_prefix(metadata, entries)
    tmp = Path(f"{os.fspath(path)}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(prefix)
            for _, payload in entries:
                f.write(payload)
            size = f.tell()
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return size


def _nbytes(x: Any, dtype: str | None) -> int:
    if dtype == "bfloat16":
        return 2 * int(np.asarray(x).size)
    if _is_torch(x):
        return int(x.numel() * x.element_size())
    return int(np.asarray(x).nbytes)


class safe_open:  # noqa: N801 - named after safetensors.safe_open on purpose
    """Lazy reader: parses only the header; ``get_tensor`` reads and verifies one payload."""

    def __init__(self, path: str | os.PathLike[str], framework: Framework = "np") -> None:
        self.path = os.fspath(path)
        self.framework: Framework = framework
        self._f = open(self.path, "rb")
        try:
            size = os.fstat(self._f.fileno()).st_size
            pre = self._f.read(_nncabac.PREAMBLE_LEN)
            span = _nncabac.header_span(pre)
            head = pre + self._f.read(span - len(pre))
            self._header = _nncabac.Header(head, size)
        except BaseException:
            self._f.close()
            raise
        self._entries = {e["name"]: e for e in self._header.entries()}
        meta = dict(self._header.metadata())
        self._aliases: dict[str, str] = json.loads(meta.get(_ALIASES, "{}"))
        self._meta = meta

    def __enter__(self) -> safe_open:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._f.close()

    def keys(self) -> list[str]:
        """Tensor names in file order, tied aliases included."""
        return list(self._entries) + list(self._aliases)

    def metadata(self) -> dict[str, str]:
        """The user's metadata (nncabac's own keys removed)."""
        return {k: v for k, v in self._meta.items() if not k.startswith("nncabac.")}

    def entry(self, name: str) -> dict[str, Any]:
        """The container entry of a tensor (shape, dtype, method, qp, payload size...)."""
        name = self._aliases.get(name, name)
        if name not in self._entries:
            raise KeyError(name)
        return dict(self._entries[name])

    def _read(self, name: str) -> tuple[dict[str, Any], bytes]:
        e = self.entry(name)
        self._f.seek(self._header.payload_start + e["offset"])
        payload = self._f.read(e["length"])
        self._header.verify(e["name"], payload)
        return e, payload

    def get_tensor(self, name: str) -> Any:
        """Read, verify and decode one tensor (only its own bytes are read)."""
        e, payload = self._read(name)
        return decode_entry(e, payload, self.framework)


def decompress(
    path: str | os.PathLike[str],
    *,
    framework: Framework = "pt",
    device: Any = None,
    dtype: Any = None,
    workers: int | None = None,
) -> dict[str, Any]:
    """All tensors of a container: torch tensors (``framework="pt"``, optionally moved to
    ``device`` and floating tensors cast to ``dtype``) or numpy arrays. Tied names share one
    tensor object, as in the original state dict."""
    if framework not in ("np", "pt"):
        raise ParameterError(f"framework must be 'np' or 'pt', got {framework!r}")
    meta, tensors = _nncabac.decode_container(Path(path).read_bytes(), threads=workers)
    out: dict[str, Any] = {}
    for name, original, arr in tensors:
        x = finish(original, arr, framework)
        if framework == "pt":
            if dtype is not None and x.is_floating_point():
                x = x.to(dtype)
            if device is not None:
                x = x.to(device)
        elif dtype is not None and np.issubdtype(x.dtype, np.floating):
            x = x.astype(dtype)
        out[name] = x
    for alias, src in json.loads(dict(meta).get(_ALIASES, "{}")).items():
        out[alias] = out[src]
    return out


def _matches(name: str, patterns: Iterable[str]) -> bool:
    from fnmatch import fnmatch

    return any(fnmatch(name, p) for p in patterns)


def compress_folder(
    src: str | os.PathLike[str], dst: str | os.PathLike[str], **policy: Any
) -> CompressReport:
    """Compress a Hugging Face model folder: weight files become one ``model.nncabac``; config,
    tokenizer and every other file are copied. Needs no network and no ``transformers``."""
    src, dst = Path(src), Path(dst)
    if not src.is_dir():
        raise FileNotFoundError(f"no such folder: {src}")
    state: dict[str, Any] = {}
    for f in sorted(src.iterdir()):
        if f.is_file() and _matches(f.name, WEIGHT_FILES):
            part, _, _ = load_state(f)
            state.update(part)
    if not state:
        raise ParameterError(f"{src}: no weight files ({', '.join(WEIGHT_FILES)})")
    dst.mkdir(parents=True, exist_ok=True)
    for f in sorted(src.iterdir()):
        if (
            f.is_file()
            and not _matches(f.name, WEIGHT_FILES)
            and not f.name.endswith(".index.json")
        ):
            shutil.copy2(f, dst / f.name)
        elif f.is_dir():
            shutil.copytree(f, dst / f.name, dirs_exist_ok=True)
    return compress(state, dst / CONTAINER_NAME, **policy)


def restore_folder(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> Path:
    """Restore a folder made by :func:`compress_folder` to one that ``transformers`` loads:
    the weights as ``model.safetensors`` (metadata ``format: pt``), other files copied."""
    src, dst = Path(src), Path(dst)
    container = src / CONTAINER_NAME
    if not container.exists():
        raise FileNotFoundError(f"{src}: no {CONTAINER_NAME}")
    dst.mkdir(parents=True, exist_ok=True)
    for f in sorted(src.iterdir()):
        if f.name == CONTAINER_NAME:
            continue
        if f.is_file():
            shutil.copy2(f, dst / f.name)
        elif f.is_dir():
            shutil.copytree(f, dst / f.name, dirs_exist_ok=True)
    save_safetensors(container, dst / "model.safetensors")
    return dst


def save_safetensors(container: str | os.PathLike[str], out: str | os.PathLike[str]) -> None:
    """Decode a container into a ``.safetensors`` file. Tied tensors are written once (as
    safetensors requires); loaders re-tie them from the model's configuration."""
    _, tensors = _nncabac.decode_container(Path(container).read_bytes())
    arrays = {name: finish(dt, arr, "np") for name, dt, arr in tensors}
    dtypes = {name: dt for name, dt, _ in tensors}
    safetensors_io.save(out, arrays, dtypes, {"format": "pt"})


def save_pt(container: str | os.PathLike[str], out: str | os.PathLike[str]) -> None:
    """Decode a container into a torch ``.pt`` state dict (tied tensors share storage)."""
    import torch

    torch.save(decompress(container, framework="pt"), out)


def _check_decodable(path: str | os.PathLike[str]) -> None:
    """Raise DecodeError if any payload is corrupt (used by `nncabac info --verify`)."""
    with safe_open(path) as f:
        for name in f._entries:
            f.get_tensor(name)


__all__ += ["save_pt", "save_safetensors"]
_ = DecodeError  # re-exported for callers catching decode errors from this module
