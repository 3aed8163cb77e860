"""Regenerates the seeds of the ``container`` fuzz target from real files written by the package
(run after a format change): ``.venv/bin/python rust/nncabac/fuzz/container_seeds.py``.

* ``small.nncabac``: a three-tensor state dict (trellis weights, a raw bias, a lossless int64
  scalar) as :func:`nncabac.compress` writes it (its table is small enough to be stored plain,
  so mutations hit the table fields directly);
* ``model.nncabac``: a twelve-tensor model-like state dict (its table is stored deflated);
* ``tensor.nncabac``: one uniformly quantized tensor from :func:`nncabac.encode_tensor`.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np

import nncabac
from nncabac import _nncabac

OUT = Path(__file__).resolve().parent / "seeds" / "container"


def written(sd: dict[str, Any], **policy: Any) -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "seed.nncabac"
        nncabac.compress(sd, path, **policy)
        return path.read_bytes()


def main() -> None:
    rng = np.random.default_rng(0)
    small = written(
        {
            "w": rng.normal(0, 0.05, (7, 6)).astype(np.float32),
            "b": np.zeros(4, np.float32),
            "steps": np.array(7, dtype=np.int64),
        },
        qp=-36,
        method="trellis",
    )
    model: dict[str, Any] = {}
    for i in range(4):
        model[f"layer{i}.conv.weight"] = rng.normal(0, 0.05, (4, 2, 3, 3)).astype(np.float32)
        model[f"layer{i}.bn.running_mean"] = np.zeros(4, np.float32)
        model[f"layer{i}.bn.num_batches_tracked"] = np.array(i, dtype=np.int64)
    tensor = nncabac.encode_tensor(
        rng.normal(0, 0.05, (8, 8)).astype(np.float32), qp=-38, method="uniform"
    )
    seeds = {"small": small, "model": written(model, qp=-30), "tensor": tensor}
    encodings = {name: data[_nncabac.PREAMBLE_LEN] for name, data in seeds.items()}
    assert encodings == {"small": 0, "model": 1, "tensor": 0}, encodings
    for name, data in seeds.items():
        _nncabac.decode_container(data)  # each seed is a valid file
        (OUT / f"{name}.nncabac").write_bytes(data)
        print(f"{name}.nncabac: {len(data)} bytes, table encoding {encodings[name]}")


if __name__ == "__main__":
    main()
