"""Incremental updates: exact reconstruction against the base, base checks, chains, error
accumulation, sparsification and per-filter scaling."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import nncabac
from nncabac.update import (
    BaseMismatchError,
    UpdateCoder,
    decode_update,
    encode_update,
    filter_scales,
    sparsify,
    state_hash,
)

SHAPES = [(), (0,), (1,), (7,), (3, 5), (0, 4), (8, 3, 3, 3), (2, 1, 1, 6)]


def _model(seed: int, shapes: list[tuple[int, ...]], dtype: str = "float32") -> dict:
    rng = np.random.default_rng(seed)
    out = {f"t{i}": rng.normal(0, 0.1, s).astype(dtype) for i, s in enumerate(shapes)}
    out["steps"] = np.array(seed, dtype=np.int64)
    return out


def _moved(base: dict, seed: int, scale: float = 0.01) -> dict:
    rng = np.random.default_rng(seed)
    out = {}
    for k, v in base.items():
        if v.dtype.kind == "f":
            out[k] = (v + rng.normal(0, scale, v.shape)).astype(v.dtype)
        else:
            out[k] = v + 1
    return out


def _same(a: dict, b: dict) -> None:
    assert sorted(a) == sorted(b)
    for k in a:
        x, y = np.asarray(a[k]), np.asarray(b[k])
        assert x.dtype == y.dtype and x.shape == y.shape, k
        assert x.tobytes() == y.tobytes(), k


coders = st.builds(
    UpdateCoder,
    qp=st.integers(-60, -20),
    method=st.sampled_from(["uniform", "rdoq", "trellis"]),
    keep=st.one_of(st.none(), st.floats(0, 1)),
    threshold=st.one_of(st.none(), st.floats(0, 0.05)),
    structured=st.booleans(),
    scaling=st.booleans(),
)


@settings(max_examples=40, deadline=None)
@given(
    coder=coders,
    shapes=st.lists(st.sampled_from(SHAPES), max_size=4),
    dtype=st.sampled_from(["float32", "float16", "float64"]),
    seed=st.integers(0, 2**16),
)
def test_receiver_rebuilds_exactly_what_the_sender_reports(coder, shapes, dtype, seed):
    base = _model(seed, shapes, dtype)
    new = _moved(base, seed + 1)
    sent = coder.encode(new, base)
    got = decode_update(sent.data, base)
    _same(got, sent.state)
    assert got["steps"] == new["steps"]  # integer buffers travel exactly
    for k in base:
        assert got[k].dtype == base[k].dtype


def test_without_sparsity_the_update_is_within_half_a_step():
    base = _model(0, [(16, 8), (4, 4, 3, 3), (16,)])
    new = _moved(base, 1)
    sent = UpdateCoder(qp=-40, method="uniform").encode(new, base)
    for k in ("t0", "t1"):
        err = np.abs(sent.state[k] - new[k]).max()
        assert err <= nncabac.step_size(-40) / 2 + 1e-6
    assert np.abs(sent.state["t2"] - new["t2"]).max() <= nncabac.step_size(-56) / 2 + 1e-6


def test_base_mismatch_is_a_clear_error():
    base = _model(0, [(16, 8)])
    data = encode_update(_moved(base, 1), base, qp=-40)
    other = {k: v.copy() for k, v in base.items()}
    other["t0"][3, 3] = np.nextafter(other["t0"][3, 3], np.float32(1))
    with pytest.raises(BaseMismatchError, match="coded against base"):
        decode_update(data, other)
    with pytest.raises(BaseMismatchError):
        decode_update(data, {"t0": base["t0"]})  # a tensor missing from the base
    assert issubclass(BaseMismatchError, nncabac.ParameterError)


def test_the_hash_covers_names_dtypes_shapes_and_values():
    a = {"w": np.arange(6, dtype=np.float32).reshape(2, 3)}
    h = state_hash(a)
    assert h == state_hash({"w": a["w"].copy()}) and len(h) == 64
    assert h != state_hash({"v": a["w"]})
    assert h != state_hash({"w": a["w"].reshape(3, 2)})
    assert state_hash({"s": np.float32(1)}) != state_hash({"s": np.ones(1, np.float32)})
    assert h != state_hash({"w": a["w"].astype(np.float64)})
    assert h != state_hash({"w": a["w"] + np.float32(1e-7)})


def test_not_an_update_and_corrupt_updates_are_rejected():
    base = _model(0, [(16, 8)])
    with pytest.raises(nncabac.ParameterError, match="not an nncabac update"):
        decode_update(nncabac.encode_tensor(base["t0"]), base)
    data = bytearray(encode_update(_moved(base, 1), base, qp=-40))
    data[-3] ^= 0x10
    with pytest.raises(nncabac.DecodeError):
        decode_update(bytes(data), base)


def _chain(coder: UpdateCoder, rounds: int) -> tuple[dict, dict]:
    """Rounds of federated training: each round's model is the receiver's model plus a fresh
    local update; returns the sum of the updates and what the receiver accumulated."""
    base = _model(0, [(32, 16), (8, 4, 3, 3), (32,)])
    receiver = base
    total = {k: np.zeros_like(v) for k, v in base.items() if v.dtype.kind == "f"}
    rng = np.random.default_rng(1)
    drift = {k: rng.normal(0, 0.01, v.shape).astype(np.float32) for k, v in total.items()}
    for _ in range(rounds):
        local = dict(receiver)
        for k in total:
            u = drift[k] + rng.normal(0, 0.003, drift[k].shape).astype(np.float32)
            local[k] = receiver[k] + u
            total[k] += u
        sent = coder.encode(local, receiver)
        receiver = decode_update(sent.data, receiver)
        _same(receiver, sent.state)  # every link of the chain decodes exactly
    got = {k: receiver[k] - base[k] for k in total}
    return total, got


def test_chains_of_updates_with_error_accumulation():
    total, with_ef = _chain(UpdateCoder(qp=-36, keep=0.1, scaling=True), 10)
    _, without_ef = _chain(UpdateCoder(qp=-36, keep=0.1, scaling=True, error_feedback=False), 10)
    for k in ("t0", "t1"):  # what was not sent arrives in later rounds
        err = np.abs(with_ef[k] - total[k]).mean()
        lost = np.abs(without_ef[k] - total[k]).mean()
        assert err < 0.5 * lost, (k, err, lost)


@settings(max_examples=30, deadline=None)
@given(coder=coders, seed=st.integers(0, 2**16))
def test_sent_plus_residual_is_the_update(coder, seed):
    base = _model(seed, [(16, 8), (6, 2, 3, 3), (16,)])
    coder.residual = {"t0": np.random.default_rng(seed).normal(0, 1e-3, (16, 8)).astype("f4")}
    before = {k: v.copy() for k, v in coder.residual.items()}
    new = _moved(base, seed + 1)
    sent = coder.encode(new, base)
    for k in ("t0", "t1", "t2"):
        update = new[k] - base[k] + before.get(k, 0)
        np.testing.assert_allclose(sent.sent[k] + coder.residual[k], update, rtol=0, atol=1e-6)


def test_sparsity_shrinks_updates_and_zeros_are_almost_free():
    base = {"w": np.random.default_rng(0).normal(0, 0.05, (512, 512)).astype(np.float32)}
    new = _moved(base, 1, scale=0.005)
    dense = len(encode_update(new, base, qp=-40))
    sparse = len(encode_update(new, base, qp=-40, keep=0.01))
    assert sparse < dense / 20
    nonzero = int(np.ceil(0.01 * 512 * 512))
    # what the 99 % zeros cost: far below a tenth of a bit each
    zero_bits = 8 * sparse - nonzero * 16
    assert zero_bits / (512 * 512 - nonzero) < 0.05


def test_unchanged_tensors_are_left_out():
    base = _model(0, [(16, 8), (4,)])
    new = dict(base)
    new["t0"] = base["t0"] + np.float32(0.05)
    sent = UpdateCoder(qp=-40).encode(new, base)
    header = nncabac._nncabac.Header(sent.data, len(sent.data))
    assert [e["name"] for e in header.entries()] == ["t0"]
    _same(decode_update(sent.data, base), sent.state)


def test_new_and_removed_tensors():
    base = _model(0, [(16, 8), (4,)])
    new = _moved(base, 1)
    del new["t1"]
    new["extra"] = np.ones((3, 3), np.float32)
    new["t0"] = np.zeros((8, 16), np.float32)  # reshaped: sent as its value
    sent = UpdateCoder(qp=-40).encode(new, base)
    got = decode_update(sent.data, base)
    _same(got, sent.state)
    assert "t1" not in got and got["t0"].shape == (8, 16)
    np.testing.assert_allclose(got["extra"], 1, atol=nncabac.step_size(-40))


def test_sparsify():
    x = np.arange(-50, 50, dtype=np.float32).reshape(10, 10)
    assert np.count_nonzero(sparsify(x, keep=0.1)) == 10
    assert np.count_nonzero(sparsify(x, keep=0)) == 0
    assert np.count_nonzero(sparsify(x, keep=1e-9)) == 1
    np.testing.assert_array_equal(sparsify(x), x)
    t = sparsify(x, threshold=45)
    assert set(np.abs(t[t != 0]).tolist()) == {45, 46, 47, 48, 49, 50}
    rows = sparsify(x, keep=0.2, structured=True)
    kept = np.flatnonzero(np.abs(rows).sum(1))
    assert kept.tolist() == [0, 9]  # the two rows of largest norm, whole
    np.testing.assert_array_equal(rows[kept], x[kept])
    with pytest.raises(nncabac.ParameterError):
        sparsify(x, keep=1.5)


def test_filter_scales_recover_a_gain():
    rng = np.random.default_rng(0)
    approx = rng.normal(size=(4, 3, 3, 3)).astype(np.float32)
    gains = np.array([1.0, 1.1, 0.9, 2.0], np.float32)
    target = approx * gains[:, None, None, None]
    np.testing.assert_allclose(filter_scales(target, approx), gains, rtol=1e-6)
    approx[2] = 0
    assert filter_scales(target, approx)[2] == 1.0


def test_given_scale_factors_round_trip():
    base = _model(0, [(8, 4, 3, 3)])
    new = _moved(base, 1)
    factors = np.linspace(0.8, 1.2, 8).astype(np.float32)
    coder = UpdateCoder(qp=-40, method="uniform", keep=0.05, scale_qp=-60)
    sent = coder.encode(new, base, scales={"t0": factors})
    got = decode_update(sent.data, base)
    _same(got, sent.state)
    np.testing.assert_allclose(sent.scales["t0"], factors, atol=nncabac.step_size(-60) / 2 + 1e-7)
    delta = sent.state["t0"] / sent.scales["t0"][:, None, None, None] - base["t0"]
    assert np.count_nonzero(np.abs(delta) > 1e-5) <= int(np.ceil(0.05 * delta.size))


def test_scaling_compensates_a_sparse_update():
    rng = np.random.default_rng(0)
    base = {"w": rng.normal(0, 0.1, (32, 16, 3, 3)).astype(np.float32)}
    gains = rng.uniform(0.9, 1.1, 32).astype(np.float32)
    new = {"w": base["w"] * gains[:, None, None, None]}  # a feature re-weighting
    plain = UpdateCoder(qp=-44, keep=0.02, error_feedback=False).encode(new, base)
    scaled = UpdateCoder(qp=-44, keep=0.02, scaling=True, error_feedback=False).encode(new, base)
    err_plain = np.abs(plain.state["w"] - new["w"]).mean()
    err_scaled = np.abs(scaled.state["w"] - new["w"]).mean()
    assert err_scaled < err_plain / 3


def test_torch_state_dicts_and_bfloat16():
    torch = pytest.importorskip("torch")
    base = {
        "w": torch.randn(8, 4, dtype=torch.bfloat16),
        "h": torch.randn(6, 2, dtype=torch.float16),
        "n": torch.tensor(3),
    }
    new = {k: (v + 0.05 if v.is_floating_point() else v + 1) for k, v in base.items()}
    sent = UpdateCoder(qp=-40).encode(new, base)
    got = decode_update(sent.data, base, framework="pt")
    assert got["w"].dtype == torch.bfloat16 and got["h"].dtype == torch.float16
    assert int(got["n"]) == 4
    again = decode_update(sent.data, {k: v.clone() for k, v in base.items()}, framework="pt")
    assert all(torch.equal(got[k], again[k]) for k in got)
    assert (got["w"].float() - new["w"].float()).abs().max() < 0.02


def test_learned_scale_factors_fit_local_data():
    torch = pytest.importorskip("torch")
    from nncabac.update import learn_scales

    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3), torch.nn.Flatten(), torch.nn.LazyLinear(4)
    )
    x = torch.randn(64, 3, 6, 6)
    model(x)  # materialize the lazy layer
    base = {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}
    gains = torch.linspace(0.5, 1.5, 8)
    with torch.no_grad():  # the local model: the same filters, re-weighted
        teacher_w = model[0].weight * gains.view(-1, 1, 1, 1)
        model[0].weight.copy_(teacher_w)
        y = model(x)
        model[0].weight.copy_(torch.from_numpy(base["0.weight"]))
    local = dict(base, **{"0.weight": teacher_w.numpy()})
    batches = [(x[i : i + 16], y[i : i + 16]) for i in range(0, 64, 16)]
    seen = {}

    def learned(approx):
        seen.update(approx)
        return learn_scales(
            model,
            {"0.weight": approx["0.weight"]},
            batches,
            torch.nn.functional.mse_loss,
            steps=300,
            lr=0.02,
        )

    coder = UpdateCoder(qp=-44, keep=0.0, rule=lambda n, a: None, scale_qp=-56)
    sent = coder.encode(local, base, scales=learned)
    assert sorted(seen) == ["0.weight", "2.weight"]  # every quantized tensor of rank >= 2
    np.testing.assert_allclose(sent.scales["0.weight"], gains.numpy(), atol=0.05)
    _same(decode_update(sent.data, base), sent.state)
    assert torch.equal(model[0].weight, torch.from_numpy(base["0.weight"]))  # model untouched


def test_cli_diff_and_patch(tmp_path, capsys):
    from nncabac import cli, safetensors_io

    base = _model(0, [(32, 16), (8, 4, 3, 3), (32,)])
    new = _moved(base, 1)
    safetensors_io.save(tmp_path / "base.safetensors", base)
    safetensors_io.save(tmp_path / "new.safetensors", new)
    upd, out = tmp_path / "u.nncabac", tmp_path / "out.safetensors"
    args = ["diff", str(tmp_path / "base.safetensors"), str(tmp_path / "new.safetensors")]
    assert cli.main([*args, str(upd), "--qp", "-40", "--keep", "0.5", "--scaling"]) == 0
    assert cli.main(["patch", str(tmp_path / "base.safetensors"), str(upd), str(out)]) == 0
    got, _, _ = safetensors_io.load(out)
    _same(dict(got), decode_update(upd.read_bytes(), base))
    torch = pytest.importorskip("torch")
    pt = tmp_path / "out.pt"
    assert cli.main(["patch", str(tmp_path / "base.safetensors"), str(upd), str(pt)]) == 0
    _same({k: v.numpy() for k, v in torch.load(pt).items()}, dict(got))
    assert cli.main(["info", str(upd)]) == 0
    assert "an update" in capsys.readouterr().out
    # the wrong base: a one-line error and exit code 2, no output file
    safetensors_io.save(tmp_path / "other.safetensors", new)
    bad = tmp_path / "bad.safetensors"
    assert cli.main(["patch", str(tmp_path / "other.safetensors"), str(upd), str(bad)]) == 2
    assert "coded against base" in capsys.readouterr().err and not bad.exists()
