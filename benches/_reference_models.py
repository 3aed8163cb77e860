"""Times NNCodec 2.1.3's whole-model API (``nncodec.nnc.compress`` / ``decompress``) on a state
dict; run by bench_models.py with the reference's Python (numpy<2, torch, nncodec's imports).

Usage: python _reference_models.py JOB.json  -> prints a JSON result line.

JOB: ``npz`` (float32/int32 tensors, none 0-d: NNCodec rejects other dtypes and 0-d arrays),
``bitstream`` and ``reconstruction`` (output paths), ``settings`` (keyword arguments of
``nncodec.nnc.compress``: qp, use_dq, lambda_scale, ...), ``repeats``.

The first compress runs right after the imports and the load, with the peak RSS reset just before
(``/proc/self/clear_refs``), so that its peak minus the RSS before it is what compressing cost;
it is also the warm-up: the timed repeats follow. Never imported by nncabac itself.
"""

import gc
import json
import sys
import time

import numpy as np
from nncodec import nnc


def _status_kb(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def _reset_peak():
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def main():
    job = json.load(open(sys.argv[1]))
    with np.load(job["npz"]) as d:
        params = {k: d[k] for k in d.files}
    settings = job["settings"]

    def compress():
        # a fresh dict of the same arrays each time (compress may add entries to its argument)
        return nnc.compress(
            dict(params),
            bitstream_path=job["bitstream"],
            return_bitstream=True,
            verbose=False,
            **settings,
        )

    gc.collect()
    base_kb = _status_kb("VmRSS")
    reset = _reset_peak()
    t = time.perf_counter()
    bitstream = compress()
    first_s = time.perf_counter() - t
    peak_kb = _status_kb("VmHWM")
    enc_t = []
    for _ in range(job["repeats"]):
        t = time.perf_counter()
        bitstream = compress()
        enc_t.append(time.perf_counter() - t)
    dec_t, rec = [], {}
    for _ in range(job["repeats"]):
        t = time.perf_counter()
        rec = nnc.decompress(job["bitstream"])
        dec_t.append(time.perf_counter() - t)
    np.savez(job["reconstruction"], **rec)
    print(
        json.dumps(
            {
                "first_compress_s": first_s,
                "compress_s": enc_t,
                "decompress_s": dec_t,
                "num_bytes": len(bitstream),
                "base_kb": base_kb,
                "peak_kb": peak_kb,
                "peak_reset": reset,
                "numpy": np.__version__,
            }
        )
    )


if __name__ == "__main__":
    main()
