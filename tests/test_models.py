"""Whole models through every entry point: module, state dict, safetensors, .pt, folders, CLI."""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import numpy as np
import pytest

import nncabac
from nncabac import DecodeError, cli, safetensors_io

torch = pytest.importorskip("torch")


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    m = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3),
        torch.nn.BatchNorm2d(8),
        torch.nn.ReLU(),
        torch.nn.Flatten(),
        torch.nn.Linear(8 * 6 * 6, 10),
    )
    m[1].running_mean.uniform_(-1, 1)
    m[1].running_var.uniform_(0.5, 2)
    m[1].num_batches_tracked.fill_(123)
    return m


def _check_close(a: dict, b: dict, atol: float = 5e-3) -> None:
    assert set(a) == set(b)
    for k in a:
        x, y = np.asarray(a[k]), np.asarray(b[k])
        assert x.shape == y.shape and x.dtype == y.dtype, k
        if x.dtype.kind in "biu" or k.endswith(("running_mean", "running_var")):
            np.testing.assert_array_equal(x, y, err_msg=k)
        else:
            np.testing.assert_allclose(x, y, atol=atol, err_msg=k)


def test_module_round_trip_and_report(tmp_path: Path) -> None:
    m = _model()
    report = nncabac.compress(m, tmp_path / "m.nncabac", qp=-38)
    assert report.file_bytes == (tmp_path / "m.nncabac").stat().st_size
    assert report.ratio > 3
    methods = {t.name: t.method for t in report.tensors}
    assert methods["0.weight"] == "trellis" and methods["1.num_batches_tracked"] == "lossless"
    assert methods["1.running_var"] == "raw"
    out = nncabac.decompress(tmp_path / "m.nncabac")
    assert isinstance(out["0.weight"], torch.Tensor)
    m2 = _model()
    m2.load_state_dict(out)
    ref = {k: v.numpy() for k, v in m.state_dict().items()}
    _check_close(ref, {k: v.numpy() for k, v in m2.state_dict().items()})
    assert "0.weight" in report.table()
    json.dumps(report.to_json())


def test_numpy_state_dict_scalars_empties_and_dtypes(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    sd = {
        "w16": rng.normal(0, 0.1, (16, 16)).astype(np.float16),
        "w64": rng.normal(0, 0.1, (8, 32)),
        "scalar": np.array(3.5, np.float32),
        "empty": np.zeros((0, 4), np.float32),
        "empty2": np.zeros((4, 0), np.float32),
        "ids": np.arange(-5, 5, dtype=np.int64),
        "flags": np.array([True, False, True]),
    }
    nncabac.compress(sd, tmp_path / "a.nncabac", qp=-40)
    out = nncabac.decompress(tmp_path / "a.nncabac", framework="np")
    _check_close(sd, out)
    assert out["scalar"].item() == 3.5  # tiny tensors are kept exact


def test_every_dtype_reads_back_the_same_through_every_reader(tmp_path: Path) -> None:
    torch.manual_seed(0)
    sd = {
        "bf16_q": (torch.randn(8, 8) / 10).to(torch.bfloat16),
        "bf16_raw": (torch.randn(3) / 10).to(torch.bfloat16),  # tiny: stored exact
        "f16_q": (torch.randn(8, 8) / 10).half(),
        "f16_raw": torch.tensor([1.5, -2.25, 65504.0], dtype=torch.float16),
        "f64_q": torch.randn(8, 8, dtype=torch.float64) / 10,
        "f64_raw": torch.tensor([1e-300, 3.0], dtype=torch.float64),
        "i8": torch.tensor([-128, 0, 127], dtype=torch.int8),
        "i16": torch.tensor([-32768, 5, 32767], dtype=torch.int16),
        "i32": torch.tensor([[-(2**31), 2**31 - 1]], dtype=torch.int32),
        "i64": torch.tensor([2**40, -1, 3]),  # beyond int32: stored raw
        "u8": torch.tensor([0, 255], dtype=torch.uint8),
        "flags": torch.tensor([True, False, True]),
        "scalar": torch.tensor(7),
        "empty": torch.zeros(0, 3),
    }
    path = tmp_path / "d.nncabac"
    nncabac.compress(sd, path, qp=-40)
    pt = nncabac.decompress(path)
    npd = nncabac.decompress(path, framework="np")
    with nncabac.safe_open(path) as f:
        lazy = {k: f.get_tensor(k) for k in f.keys()}
    nncabac.models.save_safetensors(path, tmp_path / "d.safetensors")
    st, st_dtypes, _ = safetensors_io.load(tmp_path / "d.safetensors")
    for k, v in sd.items():
        assert pt[k].dtype == v.dtype and pt[k].shape == v.shape, k
        if k.endswith("_q"):
            torch.testing.assert_close(pt[k].float(), v.float(), atol=5e-3, rtol=0)
        else:
            assert torch.equal(pt[k], v), k
        ref = v.float().numpy() if v.dtype == torch.bfloat16 else v.numpy()
        assert npd[k].dtype == ref.dtype and lazy[k].dtype == ref.dtype, k
        np.testing.assert_array_equal(npd[k], lazy[k], err_msg=k)
        np.testing.assert_array_equal(st[k], npd[k], err_msg=k)
        np.testing.assert_array_equal(pt[k].float().numpy(), npd[k].astype(np.float32))
    assert st_dtypes["bf16_raw"] == "bfloat16"
    # numpy-only unsigned types
    usd = {
        "u16": np.array([0, 65535], np.uint16),
        "u32": np.array([0, 2**32 - 1], np.uint32),
        "u64": np.array([1, 2**63], np.uint64),
    }
    nncabac.compress(usd, tmp_path / "u.nncabac")
    _check_close(usd, nncabac.decompress(tmp_path / "u.nncabac", framework="np"))


def test_corrupt_payload_errors_name_the_tensor(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    sd = {f"layer{i}": rng.normal(0, 0.1, (32, 32)).astype(np.float32) for i in range(3)}
    path = tmp_path / "c.nncabac"
    nncabac.compress(sd, path, qp=-38)
    with nncabac.safe_open(path) as f:
        start, e = f._header.payload_start, f.entry("layer1")
    data = bytearray(path.read_bytes())
    data[start + e["offset"] + 3] ^= 0x10
    path.write_bytes(bytes(data))
    for framework in ("pt", "np"):
        with pytest.raises(DecodeError, match='"layer1": .*checksum'):
            nncabac.decompress(path, framework=framework)


def test_empty_state_dict(tmp_path: Path) -> None:
    report = nncabac.compress({}, tmp_path / "e.nncabac")
    assert report.tensors == []
    assert nncabac.decompress(tmp_path / "e.nncabac") == {}


def test_tied_tensors_are_stored_once_and_come_back_tied(tmp_path: Path) -> None:
    emb = torch.nn.Embedding(50, 16)
    head = torch.nn.Linear(16, 50, bias=False)
    head.weight = emb.weight
    model = torch.nn.ModuleDict({"emb": emb, "head": head})
    report = nncabac.compress(model, tmp_path / "t.nncabac", qp=-40)
    assert report.aliases == {"head.weight": "emb.weight"}
    assert [t.name for t in report.tensors] == ["emb.weight"]
    out = nncabac.decompress(tmp_path / "t.nncabac")
    assert out["head.weight"] is out["emb.weight"]
    with nncabac.safe_open(tmp_path / "t.nncabac") as f:
        assert f.keys() == ["emb.weight", "head.weight"]


def test_safetensors_and_pt_inputs_and_outputs(tmp_path: Path) -> None:
    m = _model()
    sd = {k: v.numpy() for k, v in m.state_dict().items()}
    bf = (torch.randn(6, 5) / 10).to(torch.bfloat16)
    safetensors_io.save(
        tmp_path / "in.safetensors", {**sd, "bf": bf.float().numpy()}, {"bf": "bfloat16"}
    )
    nncabac.compress(tmp_path / "in.safetensors", tmp_path / "s.nncabac", qp=-40)
    assert (
        cli.main(["decompress", str(tmp_path / "s.nncabac"), str(tmp_path / "out.safetensors")])
        == 0
    )
    back, dtypes, meta = safetensors_io.load(tmp_path / "out.safetensors")
    assert dtypes["bf"] == "bfloat16" and meta == {"format": "pt"}
    _check_close(sd, {k: v for k, v in back.items() if k != "bf"})
    np.testing.assert_allclose(back["bf"], bf.float().numpy(), atol=0.01)

    torch.save(m.state_dict(), tmp_path / "in.pt")
    nncabac.compress(tmp_path / "in.pt", tmp_path / "p.nncabac", qp=-40)
    assert cli.main(["decompress", str(tmp_path / "p.nncabac"), str(tmp_path / "out.pt")]) == 0
    loaded = torch.load(tmp_path / "out.pt", weights_only=True)
    _check_close(sd, {k: v.numpy() for k, v in loaded.items()})


def test_lazy_reader_reads_only_the_requested_tensor(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    sd = {f"layer{i}": rng.normal(0, 0.1, (64, 64)).astype(np.float32) for i in range(4)}
    path = tmp_path / "l.nncabac"
    nncabac.compress(sd, path, qp=-38, metadata={"author": "test"})
    with nncabac.safe_open(path) as f:
        e = f.entry("layer2")
        # corrupt every other payload: the requested one still decodes
    data = bytearray(path.read_bytes())
    with nncabac.safe_open(path) as f:
        start = f._header.payload_start
        for name in ("layer0", "layer1", "layer3"):
            o = f.entry(name)
            data[start + o["offset"] + o["length"] // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with nncabac.safe_open(path) as f:
        assert f.metadata() == {"author": "test"}
        np.testing.assert_allclose(f.get_tensor("layer2"), sd["layer2"], atol=5e-3)
        assert e == f.entry("layer2")
        with pytest.raises(DecodeError, match="checksum"):
            f.get_tensor("layer1")
        with pytest.raises(KeyError):
            f.get_tensor("nope")


def test_hostile_files_give_clear_errors(tmp_path: Path) -> None:
    path = tmp_path / "h.nncabac"
    nncabac.compress({"w": np.ones((8, 8), np.float32)}, path)
    good = path.read_bytes()
    cases = {
        "truncated": good[: len(good) // 2],
        "empty": b"",
        "magic": b"XXXXXXXX" + good[8:],
        "version": good[:8] + struct.pack("<H", 9) + good[10:],
        "header-size": good[:12] + struct.pack("<I", (256 << 20) + 1) + good[16:],
        "flip": good[:30] + bytes([good[30] ^ 1]) + good[31:],
        "extended": good + b"\0",
    }
    for what, blob in cases.items():
        p = tmp_path / f"{what}.nncabac"
        p.write_bytes(blob)
        with pytest.raises(DecodeError):
            nncabac.decompress(p)
        assert cli.main(["info", str(p)]) == 2, what


def test_cli_compress_info_and_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    m = _model()
    torch.save(m.state_dict(), tmp_path / "m.pt")
    assert cli.main(["compress", str(tmp_path / "m.pt"), str(tmp_path / "m.nncabac"), "-v"]) == 0
    out = capsys.readouterr().out
    assert "0.weight" in out and "smaller" in out
    assert cli.main(["info", str(tmp_path / "m.nncabac"), "--json", "--verify"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert {t["name"] for t in info["tensors"]} == set(m.state_dict())
    assert (
        cli.main(
            [
                "compress",
                str(tmp_path / "m.pt"),
                str(tmp_path / "b.nncabac"),
                "--bits-per-weight",
                "2.5",
                "--json",
            ]
        )
        == 0
    )
    rep = json.loads(capsys.readouterr().out)
    assert rep["steps"] and any(s["accepted"] for s in rep["steps"])
    assert cli.main(["info", str(tmp_path / "missing.nncabac")]) == 2
    (tmp_path / "junk.pt").write_bytes(b"not a pickle")
    assert cli.main(["compress", str(tmp_path / "junk.pt"), str(tmp_path / "x.nncabac")]) == 2
    (tmp_path / "w.txt").write_text("hello")
    assert cli.main(["compress", str(tmp_path / "w.txt"), str(tmp_path / "x.nncabac")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("nncabac: error") == 3


def test_greater_than_flags_chosen_per_tensor_or_fixed(tmp_path: Path) -> None:
    """By default each CABAC tensor gets its own G; ``num_gtx_flags=11`` (CLI
    ``--num-gtx-flags``) codes every one as NNCodec does. The levels are the same either way."""
    m = _model()
    torch.save(m.state_dict(), tmp_path / "m.pt")
    nncabac.compress(m, tmp_path / "auto.nncabac", qp=-50, method="uniform")
    argv = ["compress", str(tmp_path / "m.pt"), str(tmp_path / "g11.nncabac"), "--qp", "-50"]
    assert cli.main([*argv, "--method", "uniform", "--num-gtx-flags", "11"]) == 0

    def flags(path: Path) -> dict[str, int]:
        with nncabac.safe_open(path) as f:
            es = {k: f.entry(k) for k in f.keys()}
        return {k: e["num_gtx_flags"] for k, e in es.items() if e["method"] != "raw"}

    assert set(flags(tmp_path / "g11.nncabac").values()) == {11}
    auto = flags(tmp_path / "auto.nncabac")
    assert auto["0.weight"] == 1  # dense levels at a fine step
    a = nncabac.decompress(tmp_path / "auto.nncabac", framework="np")
    b = nncabac.decompress(tmp_path / "g11.nncabac", framework="np")
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    assert cli.main([*argv[:2], str(tmp_path / "x.nncabac"), "--num-gtx-flags", "0"]) == 2


def test_folder_round_trip_without_transformers(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    m = _model()
    sd = {k: v.numpy() for k, v in m.state_dict().items()}
    safetensors_io.save(src / "model.safetensors", sd, metadata={"format": "pt"})
    (src / "config.json").write_text('{"model_type": "toy"}')
    (src / "tokenizer.json").write_text("{}")
    nncabac.compress_folder(src, tmp_path / "small", qp=-40)
    assert sorted(os.listdir(tmp_path / "small")) == [
        "config.json",
        "model.nncabac",
        "tokenizer.json",
    ]
    assert cli.main(["decompress", str(tmp_path / "small"), str(tmp_path / "restored")]) == 0
    back, _, meta = safetensors_io.load(tmp_path / "restored" / "model.safetensors")
    assert meta == {"format": "pt"}
    assert (tmp_path / "restored" / "config.json").read_text() == '{"model_type": "toy"}'
    _check_close(sd, back)


def test_compress_streams_the_file_and_leaves_nothing_behind_on_failure(tmp_path: Path) -> None:
    state = {"w": np.linspace(-1, 1, 600, dtype=np.float32).reshape(20, 30)}
    report = nncabac.compress(state, tmp_path / "s.nncabac", qp=-38, method="uniform")
    data = (tmp_path / "s.nncabac").read_bytes()
    assert report.file_bytes == len(data)
    np.testing.assert_allclose(
        nncabac.decompress(tmp_path / "s.nncabac", framework="np")["w"],
        state["w"],
        atol=0.01,
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.nncabac"]
    # The final rename fails (a folder is in the way) after the temporary file was written.
    (tmp_path / "d.nncabac").mkdir()
    with pytest.raises(OSError):
        nncabac.compress(state, tmp_path / "d.nncabac", qp=-38)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.nncabac", "s.nncabac"]
