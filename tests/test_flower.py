"""The Flower integration: mod and strategy wrapper (exact reconstruction at both ends, bytes
counted, base synchronisation and its failure), and a real Flower simulation (2 clients, 2
rounds)."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import numpy as np
import pytest

pytest.importorskip("flwr")

from flwr.app import Array, ArrayRecord, Context, Message, MetricRecord, RecordDict  # noqa: E402
from flwr.clientapp import ClientApp  # noqa: E402
from flwr.serverapp.strategy import FedAvg  # noqa: E402

from nncabac import DecodeError, ParameterError  # noqa: E402
from nncabac.flower import (  # noqa: E402
    DELTA,
    FULL,
    HELD,
    RESIDUAL,
    TRAFFIC,
    CompressedStrategy,
    LocalGrid,
    NncabacCodec,
    UncompressedCodec,
    nncabac_mod,
)
from nncabac.update import BaseMismatchError, UpdateCoder, read_update, state_hash  # noqa: E402

OPTS: dict[str, Any] = dict(qp=-36, keep=0.2)


def model(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "conv.weight": rng.normal(0, 0.1, (8, 3, 3, 3)).astype(np.float32),
        "conv.bias": rng.normal(0, 0.1, 8).astype(np.float32),
        "fc.weight": rng.normal(0, 0.1, (10, 32)).astype(np.float32),
        "steps": np.array(3, dtype=np.int64),
    }


def rec(arrays: dict[str, np.ndarray]) -> ArrayRecord:
    return ArrayRecord({k: Array(np.asarray(v, order="C")) for k, v in arrays.items()})


def step(state: dict[str, np.ndarray], node: int, rnd: int) -> dict[str, np.ndarray]:
    """Deterministic stand-in for local training: a node- and round-dependent change."""
    rng = np.random.default_rng(1000 * node + rnd)
    out = {}
    for k, v in state.items():
        if v.dtype.kind == "f":
            out[k] = (v + rng.normal(0, 0.02, v.shape)).astype(v.dtype)
        else:
            out[k] = v + 1
    return out


def client_app(mod: Any, seen: list[Any] | None = None) -> ClientApp:
    app = ClientApp(mods=[mod])

    @app.train()  # type: ignore[misc]
    def train(msg: Message, context: Context) -> Message:
        got = msg.content["arrays"]
        if seen is not None:
            seen.append((context.node_id, list(got.keys()), {k: v.numpy() for k, v in got.items()}))
        rnd = int(msg.content["config"]["server-round"])
        new = step({k: v.numpy() for k, v in got.items()}, context.node_id, rnd)
        metrics = MetricRecord({"num-examples": 10 * (1 + context.node_id % 2)})
        return Message(RecordDict({"arrays": rec(new), "metrics": metrics}), reply_to=msg)

    return app


def fedavg(n: int) -> FedAvg:
    return FedAvg(fraction_evaluate=0.0, min_train_nodes=n, min_available_nodes=n)


def run_local(n: int, rounds: int, seen: list[Any] | None = None, **opts: Any) -> tuple[Any, ...]:
    options = {**OPTS, **opts}
    strategy = CompressedStrategy(fedavg(n), **options)
    grid = LocalGrid(client_app(nncabac_mod(**options), seen), n)
    result = strategy.start(grid=grid, initial_arrays=rec(model()), num_rounds=rounds)
    return strategy, grid, result


def test_import_nncabac_does_not_import_flwr() -> None:
    code = "import sys, nncabac, nncabac.update; assert 'flwr' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_both_ends_hold_the_same_model_and_count_the_same_bytes() -> None:
    seen: list[Any] = []
    strategy, grid, result = run_local(3, 3, seen)
    assert strategy.dropped == 0
    # the server's record of what each client holds is, bit for bit, what the client holds
    for node, ctx in grid.contexts.items():
        held = {k: v.numpy() for k, v in ctx.state[HELD].items()}
        assert state_hash(held) == state_hash(strategy._held[node])
    # nodes in step share one encoding per round: every client got the same bytes
    down = [dict(ctx.state[TRAFFIC])["bytes-down"] for ctx in grid.contexts.values()]
    up = [dict(ctx.state[TRAFFIC])["bytes-up"] for ctx in grid.contexts.values()]
    assert len(set(down)) == 1
    assert sum(down) == strategy.bytes_down == sum(t["down"] for t in strategy.traffic.values())
    assert sum(up) == strategy.bytes_up == sum(t["up"] for t in strategy.traffic.values())
    assert set(strategy.traffic) == {1, 2, 3}
    assert all(t["down"] > 0 and t["up"] > 0 for t in strategy.traffic.values())
    # compressed: far below the raw fp32 traffic of 3 rounds x 3 clients x 2 directions
    raw = sum(v.nbytes for v in model().values())
    assert strategy.bytes_down + strategy.bytes_up < 0.5 * 18 * raw
    # the ClientApp saw the tensors in the order they were sent, with their dtypes and shapes
    assert len(seen) == 9 and all(keys == list(model()) for _, keys, _ in seen)
    for _, _, arrays in seen[:3]:  # round 1: the initial model (FedAvg then averages in float)
        assert arrays["steps"].dtype == np.int64 and arrays["steps"].shape == ()
        assert int(arrays["steps"]) == 3
    assert list(result.arrays.keys()) == list(model())


def test_the_aggregate_follows_the_uncompressed_run() -> None:
    n, rounds = 2, 3
    _, _, got = run_local(n, rounds, keep=None, qp=-48)
    # uncompressed reference: FedAvg (weights 10 and 20) of the same deterministic steps
    state = model()
    weights = {node: 10 * (1 + node % 2) for node in LocalGrid(ClientApp(), n).node_ids}
    for rnd in range(1, rounds + 1):
        new = {node: step(state, node, rnd) for node in weights}
        total = sum(weights.values())
        state = {k: sum(new[nd][k] * (w / total) for nd, w in weights.items()) for k in state}
    for k, v in got.arrays.items():
        np.testing.assert_allclose(v.numpy(), state[k], atol=2e-3, err_msg=k)


def test_uplink_mod_exact_and_residual() -> None:
    """The reply decodes (server side) to exactly the coder's reconstruction; what was not
    sent is kept in context.state and sent + residual equals the update."""
    base = model()
    codec = NncabacCodec(**OPTS)
    first = codec.encode(base, {}, {})
    ctx = Context(run_id=1, node_id=5, node_config={}, state=RecordDict(), run_config={})
    mod = nncabac_mod(**OPTS)
    LocalGrid(ClientApp(), 1)  # sets the task identity Messages need
    msg = Message(RecordDict({"nncabac:arrays": ArrayRecord({FULL: _u8(first.data)})}), 7, "train")
    new = step(first.state, 5, 1)

    def call_next(m: Message, c: Context) -> Message:
        got = {k: v.numpy() for k, v in m.content["arrays"].items()}
        assert all(np.array_equal(got[k], first.state[k]) for k in first.state)
        reply = RecordDict({"arrays": rec(new), "metrics": MetricRecord({"n": 1})})
        return Message(reply, reply_to=m)

    reply = mod(msg, ctx, call_next)
    assert "arrays" not in reply.content and "metrics" in reply.content
    ((key, arr),) = reply.content["nncabac:arrays"].items()
    assert key == DELTA
    data = arr.numpy().tobytes()
    decoded = codec.decode(data, first.state)
    expect = UpdateCoder(**OPTS).encode(new, first.state)
    for k in new:
        assert np.array_equal(decoded[k], expect.state[k]), k
    residual = {k: v.numpy() for k, v in ctx.state[RESIDUAL].items()}
    for k in ("conv.weight", "fc.weight"):
        update = new[k] - first.state[k]
        sent = decoded[k] - first.state[k]
        np.testing.assert_allclose(sent + residual[k], update, atol=1e-6)
        assert np.count_nonzero(sent) <= 0.2 * sent.size + 1  # sparsified
    counts = dict(ctx.state[TRAFFIC])
    assert counts["bytes-down"] == len(first.data) and counts["bytes-up"] == len(data)


def test_scales_hook_supplies_the_uplink_factors() -> None:
    """The mod's ``scales`` hook (e.g. factors learned on local data) gets the context, the
    ClientApp's model and the filters the server will hold, and its factors are what the
    server decodes."""
    calls: list[Any] = []

    def hook(context: Context, new: dict[str, Any], filters: dict[str, Any]) -> dict[str, Any]:
        calls.append((context.node_id, sorted(new), sorted(filters)))
        return {n: np.full(f.shape[0], 1.25, np.float32) for n, f in filters.items()}

    base = model()
    first = NncabacCodec(**OPTS).encode(base, {}, {})
    ctx = Context(run_id=1, node_id=5, node_config={}, state=RecordDict(), run_config={})
    LocalGrid(ClientApp(), 1)
    msg = Message(RecordDict({"nncabac:arrays": ArrayRecord({FULL: _u8(first.data)})}), 7, "train")
    new = step(first.state, 5, 1)

    def call_next(m: Message, c: Context) -> Message:
        return Message(RecordDict({"arrays": rec(new)}), reply_to=m)

    reply = nncabac_mod(scales=hook, **OPTS)(msg, ctx, call_next)
    assert calls == [(5, sorted(new), ["conv.weight", "fc.weight"])]
    data = reply.content["nncabac:arrays"][DELTA].numpy().tobytes()
    got = read_update(data, first.state)
    assert sorted(got.scales) == ["conv.weight", "fc.weight"]
    for s in got.scales.values():
        np.testing.assert_allclose(s, 1.25, atol=1e-4)
    # without the hook (and scaling=False) no factors travel
    ctx2 = Context(run_id=1, node_id=5, node_config={}, state=RecordDict(), run_config={})
    msg = Message(RecordDict({"nncabac:arrays": ArrayRecord({FULL: _u8(first.data)})}), 7, "train")
    plain = nncabac_mod(**OPTS)(msg, ctx2, call_next)
    assert not read_update(
        plain.content["nncabac:arrays"][DELTA].numpy().tobytes(), first.state
    ).scales


def _u8(data: bytes) -> Any:
    return Array(np.frombuffer(data, np.uint8).copy())


def test_base_mismatch_is_an_error_reply_and_the_server_resyncs() -> None:
    strategy = CompressedStrategy(fedavg(2), **OPTS)
    grid = LocalGrid(client_app(nncabac_mod(**OPTS)), 2)
    strategy.start(grid=grid, initial_arrays=rec(model()), num_rounds=1)
    victim = grid.node_ids[0]
    # the client's model drifts from what the server believes it holds
    held = {k: v.numpy() for k, v in grid.contexts[victim].state[HELD].items()}
    held["fc.weight"] = held["fc.weight"] + np.float32(1e-3)
    grid.contexts[victim].state[HELD] = rec(held)

    msgs = strategy.configure_train(2, rec(model(1)), _config(), grid)
    replies = list(grid.send_and_receive(msgs))
    bad = [r for r in replies if r.has_error()]
    assert len(bad) == 1 and bad[0].metadata.src_node_id == victim
    assert "BaseMismatchError" in str(bad[0].error.reason)
    arrays, _ = strategy.aggregate_train(2, replies)  # the other client's reply still counts
    assert arrays is not None and victim not in strategy._held
    # next round: the victim gets a whole model again and everything is back in step
    msgs = list(strategy.configure_train(3, arrays, _config(), grid))
    kinds = {m.metadata.dst_node_id: next(iter(m.content["nncabac:arrays"])) for m in msgs}
    assert kinds[victim] == FULL and kinds[grid.node_ids[1]] == DELTA
    replies = list(grid.send_and_receive(msgs))
    assert not any(r.has_error() for r in replies)
    strategy.aggregate_train(3, replies)
    assert strategy.dropped == 0


def _config() -> Any:
    from flwr.app import ConfigRecord

    return ConfigRecord()


def test_delta_to_a_client_that_holds_nothing_is_a_clear_error() -> None:
    ctx = Context(run_id=1, node_id=5, node_config={}, state=RecordDict(), run_config={})
    LocalGrid(ClientApp(), 1)
    data = NncabacCodec(**OPTS).encode(model(1), model(), {}).data
    msg = Message(RecordDict({"nncabac:arrays": ArrayRecord({DELTA: _u8(data)})}), 7, "train")
    with pytest.raises(BaseMismatchError, match="does not hold"):
        nncabac_mod(**OPTS)(msg, ctx, lambda m, c: m)


def test_downlink_error_feedback_rebases_replies_on_the_global_model() -> None:
    """With a lossy downlink the client trains from an approximation; its change is applied
    to the model the server meant to send (error_feedback=True), not to the approximation."""
    n = 2
    for feedback in (True, False):
        strategy = CompressedStrategy(fedavg(n), error_feedback=feedback, qp=-24, keep=0.1)
        grid = LocalGrid(client_app(nncabac_mod(qp=-60)), n)
        # round 1, first contact: whole models
        replies = grid.send_and_receive(strategy.configure_train(1, rec(model()), _config(), grid))
        strategy.aggregate_train(1, replies)
        msgs = list(strategy.configure_train(2, rec(model(1)), _config(), grid))
        held = {node: dict(strategy._held[node]) for node in grid.node_ids}
        replies = list(grid.send_and_receive(msgs))
        arrays, _ = strategy.aggregate_train(2, replies)
        assert arrays is not None
        got = arrays["fc.weight"].numpy()
        w = {node: 10 * (1 + node % 2) for node in grid.node_ids}
        tot = sum(w.values())
        changes = {
            node: step(held[node], node, 2)["fc.weight"] - held[node]["fc.weight"]
            for node in grid.node_ids
        }
        mean_change = sum(changes[nd] * (w[nd] / tot) for nd in grid.node_ids)
        base = (
            model(1)["fc.weight"]
            if feedback
            else sum(held[nd]["fc.weight"] * (w[nd] / tot) for nd in grid.node_ids)
        )
        # the uplink (qp -60, dense) is near-exact: only the downlink error separates the two
        np.testing.assert_allclose(got, base + mean_change, atol=1e-4)
        assert np.abs(held[grid.node_ids[0]]["fc.weight"] - model(1)["fc.weight"]).max() > 1e-3


def test_uncompressed_codec_round_trip_and_bad_input() -> None:
    c = UncompressedCodec()
    m = model()
    coded = c.encode(m, {}, {})
    assert len(coded.data) < sum(v.nbytes for v in m.values()) + 200
    back = c.decode(coded.data, {})
    assert list(back) == list(m)
    assert all(np.array_equal(back[k], m[k]) and back[k].dtype == m[k].dtype for k in m)
    for bad in (b"", coded.data[:-1], coded.data + b"x", b"X" + coded.data[1:]):
        with pytest.raises(DecodeError):
            c.decode(bad, {})


def test_options_are_checked() -> None:
    with pytest.raises(ParameterError):
        NncabacCodec(qpp=-30)
    with pytest.raises(ParameterError):
        nncabac_mod(UncompressedCodec(), qp=-30)
    with pytest.raises(ParameterError):
        CompressedStrategy(fedavg(2), UncompressedCodec(), qp=-30)


def test_flower_simulation_two_clients_two_rounds() -> None:
    """The real thing: flwr.simulation.run_simulation (Ray), 2 SuperNodes, 2 rounds."""
    pytest.importorskip("ray")
    from flwr.serverapp import Grid, ServerApp
    from flwr.simulation import run_simulation

    strategy = CompressedStrategy(fedavg(2), **OPTS)
    out: dict[str, Any] = {}
    server = ServerApp()

    @server.main()  # type: ignore[misc]
    def main(grid: Grid, context: Context) -> None:
        out["result"] = strategy.start(grid=grid, initial_arrays=rec(model()), num_rounds=2)

    run_simulation(
        server_app=server,
        client_app=client_app(nncabac_mod(**OPTS)),
        num_supernodes=2,
        backend_config={
            "client_resources": {"num_cpus": 1, "num_gpus": 0.0},
            "init_args": {"num_cpus": 2, "logging_level": "ERROR", "log_to_driver": False},
        },
    )
    assert set(strategy.traffic) == {1, 2} and strategy.dropped == 0
    assert all(t["down"] > 0 and t["up"] > 0 for t in strategy.traffic.values())
    # round 2's downlink is an update, smaller than round 1's whole models
    assert strategy.traffic[2]["down"] < strategy.traffic[1]["down"]
    result = out["result"].arrays
    assert list(result.keys()) == list(model())
    # the model moved as the clients' steps moved it (they add N(0, 0.02) noise per round)
    change = result["fc.weight"].numpy() - model()["fc.weight"]
    assert 0.005 < float(np.abs(change).mean()) < 0.05
