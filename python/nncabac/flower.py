"""Flower integration: model traffic in both directions coded as nncabac updates.

`Flower <https://flower.ai>`_ (``pip install "flwr[simulation]"``, Message API, flwr ≥ 1.42)
moves models between a ServerApp and ClientApps as ``ArrayRecord``\\ s. Two pieces replace them
by coded updates without touching the training code:

* client side, the mod :func:`nncabac_mod` (``ClientApp(mods=[nncabac_mod(qp=-36, keep=0.02)])``)
  decodes the incoming model against the model the client holds (kept in ``context.state``)
  before the ClientApp sees it, and codes the ClientApp's reply as an update to the model it
  received, carrying what it did not send into the next round (error accumulation, residual in
  ``context.state``);
* server side, :class:`CompressedStrategy` wraps any ``flwr.serverapp.strategy.Strategy``
  (``CompressedStrategy(FedAvg(), qp=-36, keep=0.02).start(grid=..., ...)``): it codes each
  outgoing model as an update to what that client holds and decodes the replies before the
  wrapped strategy aggregates them.

Both count the bytes they send and receive (``CompressedStrategy.bytes_down``/``bytes_up`` and
``traffic`` per round; on a client, ``context.state["nncabac.traffic"]``).

**On the wire.** The model's ``ArrayRecord`` (key ``"arrays"``, or the wrapped strategy's
``arrayrecord_key``) is replaced by an ``ArrayRecord`` named ``"nncabac:arrays"`` holding one
1-D ``uint8`` array: the coded bytes. Its key says what they were coded against: ``"delta"``,
the model the receiver holds; ``"full"``, nothing (the receiver gets a whole model). Other
records (config, metrics) pass unchanged. An ``ArrayRecord`` rather than a ``ConfigRecord``
``bytes`` value, so that large payloads use Flower's array chunking.

**Base synchronisation.** The server remembers, per node, the model that node reconstructed
from the last message it was sent (bit for bit: :class:`~nncabac.update.EncodedUpdate`'s
``state``); a node it knows nothing about (first contact, or after an error reply, when it cannot
know what the node decoded) gets a ``"full"`` model. The client decodes a ``"delta"`` against
``context.state`` and codes its reply against the model it just received, which the server
still holds for it. Every update records the SHA-256 of its base, so a node out of step fails
with :class:`~nncabac.update.BaseMismatchError` (an error reply; the server then resends a full
model) instead of training on a wrong model. Nodes that hold the same model (the usual case:
all of them) share one encoding per round.

**Error accumulation.** Uplink: each client's residual (update not sent, quantization error)
joins its next update. Downlink: the server codes the current global model against the model
the client *holds*, so whatever an earlier message left out is part of the next difference;
with ``error_feedback=True`` (default) replies are also rebased onto the global model the server
meant to send (``global + (client model − model the client held)``), so the downlink error does
not leak into the aggregate.

Only payload bytes are counted (the coded container; for :class:`UncompressedCodec` the raw
tensor bytes plus a small header), not Flower's own message framing. Federated evaluation
(``configure_evaluate``) sends models too and is compressed and counted the same way.

Importing this module imports ``flwr``; ``import nncabac`` does not.
"""

from __future__ import annotations

import copy
import json
import logging
import struct
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
from flwr.app import (
    Array,
    ArrayRecord,
    ConfigRecord,
    Context,
    Error,
    Message,
    MetricRecord,
    RecordDict,
)
from flwr.clientapp import ClientApp
from flwr.clientapp.typing import ClientAppCallable
from flwr.common.constant import SUPERLINK_NODE_ID, ErrorCode
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy
from flwr.supercore.run import Run
from flwr.supercore.task_identity import TaskIdentity

from ._nncabac import DecodeError, NncabacError, ParameterError
from .update import BaseMismatchError, ScaleSource, UpdateCoder, decode_update

__all__ = [
    "Codec",
    "Coded",
    "CompressedStrategy",
    "LocalGrid",
    "NncabacCodec",
    "NncabacMod",
    "ScalesHook",
    "UncompressedCodec",
    "nncabac_mod",
]

Arrays = dict[str, npt.NDArray[Any]]
ScalesHook = Callable[[Context, Arrays, Arrays], Mapping[str, npt.ArrayLike]]
"""``(context, new model, filters) -> factors``: per-filter scale factors for the uplink, e.g.
:func:`~nncabac.update.learn_scales` on the client's data (``filters``: what the server will
hold for each quantized tensor of rank ≥ 2 before scaling)."""

PREFIX = "nncabac:"  # record name of a coded ArrayRecord: PREFIX + the original key
FULL = "full"  # coded against nothing: a whole model
DELTA = "delta"  # coded against the model the receiver holds
HELD = "nncabac.held"  # context.state: the model this client holds (the server's base for it)
RESIDUAL = "nncabac.residual"  # context.state: uplink error-accumulation residual
TRAFFIC = "nncabac.traffic"  # context.state: bytes-down / bytes-up / messages of this client

log = logging.getLogger("nncabac.flower")


@dataclass
class Coded:
    """One coded model: its bytes, the model the receiver will decode from them (bit for bit),
    and the residual to carry into the next encode (empty: none)."""

    data: bytes
    state: Arrays
    residual: Arrays = field(default_factory=dict)


class Codec(Protocol):
    """How models travel. ``base`` is what the receiver holds (``{}``: nothing — code a whole
    model); ``residual`` what earlier encodes left out (``{}`` on the downlink, which keeps its
    memory in the model the receiver holds); ``scales`` per-filter factors to send, for codecs
    that have them (as :meth:`nncabac.update.UpdateCoder.encode`)."""

    def encode(
        self, state: Arrays, base: Arrays, residual: Arrays, *, scales: ScaleSource | None = None
    ) -> Coded: ...

    def decode(self, data: bytes, base: Arrays) -> Arrays: ...


class NncabacCodec:
    """nncabac updates (:class:`~nncabac.update.UpdateCoder`; ``options`` are its arguments:
    ``qp``, ``method``, ``keep``/``threshold``/``structured``, ``scaling``, ``error_feedback``,
    ...). ``full_qp``: the qp for whole models (first contact), default ``qp``."""

    def __init__(self, *, full_qp: int | None = None, **options: Any) -> None:
        options.pop("residual", None)
        try:
            UpdateCoder(**options)
        except TypeError as e:
            raise ParameterError(f"not an UpdateCoder option: {e}") from None
        self.options = options
        self.full_qp = full_qp

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self.options.items())
        return f"NncabacCodec({opts}{'' if self.full_qp is None else f', full_qp={self.full_qp}'})"

    def encode(
        self, state: Arrays, base: Arrays, residual: Arrays, *, scales: ScaleSource | None = None
    ) -> Coded:
        if not base:  # a whole model: nothing to be differential to, nothing to accumulate
            opts = {**self.options, "error_feedback": False}
            if self.full_qp is not None:
                opts["qp"] = self.full_qp
            enc = UpdateCoder(**opts).encode(state, {})
            return Coded(enc.data, dict(enc.state))
        coder = UpdateCoder(**self.options)
        coder.residual = {k: np.asarray(v, dtype=np.float32) for k, v in residual.items()}
        enc = coder.encode(state, base, scales=scales)
        return Coded(
            enc.data, dict(enc.state), dict(coder.residual) if coder.error_feedback else {}
        )

    def decode(self, data: bytes, base: Arrays) -> Arrays:
        out: Arrays = decode_update(data, base)
        return out


_RAW_MAGIC = b"NNCARAW\x00"
_RAW_DTYPES = {"float16", "float32", "float64", "int8", "int16", "int32", "int64"} | {
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    "bool",
}


class UncompressedCodec:
    """No compression: every tensor's raw little-endian bytes behind a small JSON header
    (names, dtypes, shapes) — plain FedAvg traffic, through the same code path, for
    comparisons. The base is ignored: every message is a whole model."""

    def encode(
        self, state: Arrays, base: Arrays, residual: Arrays, *, scales: ScaleSource | None = None
    ) -> Coded:
        arrays = {k: np.asarray(v, order="C") for k, v in state.items()}
        for k, v in arrays.items():
            if v.dtype.name not in _RAW_DTYPES:
                raise ParameterError(f"{k}: dtype {v.dtype} cannot be sent raw")
        head = json.dumps([[k, v.dtype.name, list(v.shape)] for k, v in arrays.items()]).encode()
        body = b"".join(
            v.astype(v.dtype.newbyteorder("<"), copy=False).tobytes() for v in arrays.values()
        )
        data = _RAW_MAGIC + struct.pack("<I", len(head)) + head + body
        return Coded(data, {k: v.copy() for k, v in arrays.items()})

    def decode(self, data: bytes, base: Arrays) -> Arrays:
        data = bytes(data)
        if data[:8] != _RAW_MAGIC or len(data) < 12:
            raise DecodeError("not an uncompressed model (bad magic)")
        (n,) = struct.unpack("<I", data[8:12])
        try:
            head = json.loads(data[12 : 12 + n])
            out: Arrays = {}
            pos = 12 + n
            for name, dtype, shape in head:
                if dtype not in _RAW_DTYPES or not all(
                    isinstance(d, int) and d >= 0 for d in shape
                ):
                    raise DecodeError(f"{name}: bad dtype or shape")
                dt = np.dtype(dtype).newbyteorder("<")
                size = dt.itemsize * int(np.prod(shape, dtype=np.int64))
                if pos + size > len(data):
                    raise DecodeError(f"{name}: truncated")
                out[str(name)] = (
                    np.frombuffer(data, dt, size // dt.itemsize, pos)
                    .reshape(tuple(shape))
                    .astype(dt.newbyteorder("="))
                )
                pos += size
        except (ValueError, TypeError) as e:
            raise DecodeError(f"corrupt uncompressed model: {e}") from None
        if pos != len(data):
            raise DecodeError("trailing bytes after the last tensor")
        return out


# ---------------------------------------------------------------------------------------------
# records


def _arrays(record: ArrayRecord) -> Arrays:
    return {k: v.numpy() for k, v in record.items()}


def _record(arrays: Mapping[str, npt.NDArray[Any]]) -> ArrayRecord:
    return ArrayRecord({k: Array(np.asarray(v, order="C")) for k, v in arrays.items()})


def _pack(data: bytes, full: bool) -> ArrayRecord:
    return ArrayRecord({FULL if full else DELTA: Array(np.frombuffer(data, dtype=np.uint8).copy())})


def _unpack(record: ArrayRecord) -> tuple[bytes, bool]:
    if len(record) != 1 or next(iter(record)) not in (FULL, DELTA):
        raise DecodeError(f"a coded record holds one array named {FULL!r} or {DELTA!r}")
    key, arr = next(iter(record.items()))
    x = arr.numpy()
    if x.dtype != np.uint8 or x.ndim != 1:
        raise DecodeError("a coded record holds a 1-D uint8 array")
    return x.tobytes(), key == FULL


def _ordered(arrays: Arrays, like: Mapping[str, Any]) -> Arrays:
    """``arrays`` in the key order of ``like`` (then any others): a ClientApp that reads the
    record as a list (``to_numpy_ndarrays``) sees the order it was sent in."""
    out = {k: arrays[k] for k in like if k in arrays}
    out.update((k, v) for k, v in arrays.items() if k not in out)
    return out


def _replace(content: RecordDict, old: str, new: str, record: ArrayRecord) -> RecordDict:
    """A copy of ``content`` with record ``old`` replaced by ``record`` under ``new`` (the
    original RecordDict may be shared between messages: never mutated)."""
    out = RecordDict({k: v for k, v in content.items() if k != old})
    out[new] = record
    return out


def _count(context: Context, **deltas: int) -> None:
    rec = context.state.metric_records.get(TRAFFIC)
    counts = {k: int(v) for k, v in rec.items() if isinstance(v, int)} if rec else {}
    for k, v in deltas.items():
        counts[k] = counts.get(k, 0) + v
    context.state[TRAFFIC] = MetricRecord(dict(counts))


# ---------------------------------------------------------------------------------------------
# client


class NncabacMod:
    """The client-side mod (see the module docstring). Stateless itself — one instance serves
    many nodes in a simulation — everything per client lives in ``context.state``."""

    def __init__(
        self, codec: Codec, *, key: str = "arrays", scales: ScalesHook | None = None
    ) -> None:
        self.codec = codec
        self.key = key
        self.scales = scales

    def __call__(self, msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
        name = PREFIX + self.key
        if not msg.has_content() or name not in msg.content.array_records:
            return call_next(msg, context)  # nothing coded for us: pass through
        data, full = _unpack(msg.content.array_records[name])
        held_rec = context.state.array_records.get(HELD)
        held = _arrays(held_rec) if held_rec is not None and not full else {}
        if not full and held_rec is None:
            raise BaseMismatchError(
                "the server sent an update to a model this client does not hold "
                "(its context.state has none); the server resends a full model after this error"
            )
        model = _ordered(self.codec.decode(data, held), held)
        context.state[HELD] = _record(model)
        _count(context, **{"bytes-down": len(data), "messages-down": 1})
        msg.content = _replace(msg.content, name, self.key, _record(model))

        reply = call_next(msg, context)
        if not reply.has_content() or self.key not in reply.content.array_records:
            return reply
        new = _arrays(reply.content.array_records[self.key])
        res_rec = context.state.array_records.get(RESIDUAL)
        residual = _arrays(res_rec) if res_rec is not None else {}
        hook = self.scales
        if hook is None:
            coded = self.codec.encode(new, model, residual)
        else:
            coded = self.codec.encode(new, model, residual, scales=lambda f: hook(context, new, f))
        context.state[RESIDUAL] = _record(coded.residual)
        reply.content = _replace(reply.content, self.key, name, _pack(coded.data, full=False))
        _count(context, **{"bytes-up": len(coded.data), "messages-up": 1})
        return reply


def nncabac_mod(
    codec: Codec | None = None,
    *,
    key: str = "arrays",
    scales: ScalesHook | None = None,
    **options: Any,
) -> NncabacMod:
    """The client-side mod: ``ClientApp(mods=[nncabac_mod(qp=-36, keep=0.02)])``. ``options``
    configure the uplink :class:`NncabacCodec` (``qp``, ``method``, ``keep``, ``threshold``,
    ``structured``, ``scaling``, ``error_feedback``, ...); or pass a ``codec``. ``key``: the
    name of the model's ArrayRecord in messages. ``scales``: a :data:`ScalesHook` that supplies
    the per-filter factors (e.g. learned on local data) instead of the least-squares ones."""
    if codec is not None and options:
        raise ParameterError("give either a codec or codec options, not both")
    codec = codec if codec is not None else NncabacCodec(**options)
    return NncabacMod(codec, key=key, scales=scales)


# ---------------------------------------------------------------------------------------------
# server


class CompressedStrategy(Strategy):
    """Wraps a Message-API strategy: models sent to clients are coded as updates to what each
    client holds, replies are decoded (and, with ``error_feedback``, rebased onto the global
    model) before ``strategy`` aggregates them. ``options`` configure the downlink
    :class:`NncabacCodec` (or pass a ``codec``). Counts bytes: ``bytes_down``, ``bytes_up``,
    ``traffic[round] = {"down": ..., "up": ...}``."""

    def __init__(
        self,
        strategy: Strategy,
        codec: Codec | None = None,
        *,
        key: str | None = None,
        error_feedback: bool = True,
        **options: Any,
    ) -> None:
        if codec is not None and options:
            raise ParameterError("give either a codec or codec options, not both")
        self.strategy = strategy
        # the downlink's memory is the model each client holds: the codec's own is not used
        self.codec: Codec = codec if codec is not None else NncabacCodec(**options)
        self.key: str = (
            key if key is not None else str(getattr(strategy, "arrayrecord_key", "arrays"))
        )
        self.error_feedback = error_feedback
        self.bytes_down = 0
        self.bytes_up = 0
        self.traffic: dict[int, dict[str, int]] = {}
        self.dropped = 0  # replies that could not be decoded
        self._held: dict[int, Arrays] = {}  # node -> the model it reconstructed last
        self._target: dict[int, Arrays] = {}  # node -> the global model it was last sent

    def summary(self) -> None:
        log.info(
            "CompressedStrategy: %r on %r, error_feedback=%s",
            self.codec,
            self.key,
            self.error_feedback,
        )
        self.strategy.summary()

    def _tally(self, server_round: int, direction: str, n: int) -> None:
        t = self.traffic.setdefault(server_round, {"down": 0, "up": 0})
        t[direction] += n
        if direction == "down":
            self.bytes_down += n
        else:
            self.bytes_up += n

    def _compress(self, server_round: int, messages: Iterable[Message]) -> list[Message]:
        name = PREFIX + self.key
        targets: dict[int, Arrays] = {}
        cache: dict[tuple[int, int], Coded] = {}
        out = []
        for msg in messages:
            if not msg.has_content() or self.key not in msg.content.array_records:
                out.append(msg)
                continue
            rec = msg.content.array_records[self.key]
            node = msg.metadata.dst_node_id
            held = self._held.get(node)
            target = targets.get(id(rec))
            if target is None:
                target = targets[id(rec)] = _arrays(rec)
            group = (id(rec), id(held) if held is not None else 0)
            coded = cache.get(group)
            if coded is None:
                coded = cache[group] = self.codec.encode(target, held or {}, {})
            self._held[node] = coded.state  # shared by the group: one model per group in memory
            self._target[node] = target
            msg.content = _replace(msg.content, self.key, name, _pack(coded.data, held is None))
            self._tally(server_round, "down", len(coded.data))
            out.append(msg)
        return out

    def _decompress(self, server_round: int, replies: Iterable[Message]) -> list[Message]:
        name = PREFIX + self.key
        out = []
        for msg in replies:
            node = msg.metadata.src_node_id
            if msg.has_error():
                # we cannot know whether it decoded our message: resynchronise with a full model
                self._held.pop(node, None)
                out.append(msg)
                continue
            if name not in msg.content.array_records:
                out.append(msg)
                continue
            try:
                data, full = _unpack(msg.content.array_records[name])
                held = self._held.get(node)
                if held is None and not full:
                    raise BaseMismatchError(
                        f"node {node} replied with an update to a model it was never sent"
                    )
                self._tally(server_round, "up", len(data))
                model = self.codec.decode(data, {} if full else held or {})
            except NncabacError as e:
                log.warning("dropping the reply of node %s: %s", node, e)
                self._held.pop(node, None)
                self.dropped += 1
                continue
            target = self._target.get(node, {})
            if self.error_feedback and held is not None and not full:
                model = _rebase(model, held, target)
            msg.content = _replace(msg.content, name, self.key, _record(_ordered(model, target)))
            out.append(msg)
        return out

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        msgs = self.strategy.configure_train(server_round, arrays, config, grid)
        return self._compress(server_round, msgs)

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        return self.strategy.aggregate_train(server_round, self._decompress(server_round, replies))

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        msgs = self.strategy.configure_evaluate(server_round, arrays, config, grid)
        return self._compress(server_round, msgs)

    def aggregate_evaluate(
        self, server_round: int, replies: Iterable[Message]
    ) -> MetricRecord | None:
        return self.strategy.aggregate_evaluate(
            server_round, self._decompress(server_round, replies)
        )


def _rebase(model: Arrays, held: Arrays, target: Arrays) -> Arrays:
    """``target + (model − held)`` for float tensors all three have with one shape: the
    client's change, applied to the model the server meant to send."""
    out: Arrays = {}
    for k, v in model.items():
        h, t = held.get(k), target.get(k)
        if (
            h is not None
            and t is not None
            and v.dtype.kind == h.dtype.kind == t.dtype.kind == "f"
            and v.shape == h.shape == t.shape
        ):
            out[k] = (t + (v - h)).astype(v.dtype)
        else:
            out[k] = v
    return out


# ---------------------------------------------------------------------------------------------
# an in-process grid


class LocalGrid(Grid):
    """Runs a ClientApp for ``num_nodes`` nodes in this process, one message at a time, in
    place of a SuperLink and its SuperNodes: deterministic and quick (no Ray), for tests and
    experiments. Each node has its own persistent ``Context`` (``node_config`` has
    ``partition-id`` and ``num-partitions``, as in a simulation); messages are deep-copied on
    the way in and out, and an exception in the ClientApp becomes an error reply."""

    def __init__(self, client_app: ClientApp, num_nodes: int, *, run_id: int = 1) -> None:
        self.client_app = client_app
        # node ids as a simulation draws them: never the SuperLink's
        self.node_ids = [SUPERLINK_NODE_ID + 1 + i for i in range(num_nodes)]
        self.contexts = {
            nid: Context(
                run_id=run_id,
                node_id=nid,
                node_config={"partition-id": i, "num-partitions": num_nodes},
                state=RecordDict(),
                run_config={},
            )
            for i, nid in enumerate(self.node_ids)
        }
        self._run = Run.create_empty(run_id)
        try:  # Messages take their sender from the process's task identity, as in a ServerApp
            _ = TaskIdentity.run_id
        except RuntimeError:
            TaskIdentity.task_id, TaskIdentity.run_id = 1, run_id
            TaskIdentity.node_id = SUPERLINK_NODE_ID
        self._replies: dict[str, Message] = {}
        self._next = 0

    def set_run(self, run: Run) -> None:
        self._run = run

    @property
    def run(self) -> Run:
        return self._run

    def create_message(
        self,
        content: RecordDict,
        message_type: str,
        dst_node_id: int,
        group_id: str,
        ttl: float | None = None,
    ) -> Message:
        return Message(content, dst_node_id, message_type, ttl=ttl, group_id=group_id)

    def get_node_ids(self) -> Iterable[int]:
        return list(self.node_ids)

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        ids = []
        for msg in messages:
            node = msg.metadata.dst_node_id
            if node not in self.contexts:
                raise ParameterError(f"no node {node} in this grid")
            incoming = copy.deepcopy(msg)
            try:
                reply = copy.deepcopy(self.client_app(incoming, self.contexts[node]))
            except Exception as e:  # noqa: BLE001 - a failing ClientApp is an error reply, as in Flower
                reply = Message(
                    Error(
                        code=ErrorCode.CLIENT_APP_RAISED_EXCEPTION,
                        reason=f"{type(e).__name__}: {e}",
                    ),
                    reply_to=incoming,
                )
            self._next += 1
            mid = f"local-{self._next}"
            self._replies[mid] = reply
            ids.append(mid)
        return ids

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        return [self._replies.pop(m) for m in message_ids if m in self._replies]

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]:
        return self.pull_messages(self.push_messages(messages))
