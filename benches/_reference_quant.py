"""Runs NNCodec 2.1.3's quantizer (``quantLayer``) for the quantization benchmarks, in the
reference's own interpreter (it needs numpy<2): started by bench_quant_rd.py and
bench_quant_speed.py, never imported by nncabac.

Usage: python _reference_quant.py SHARED_TOOLS_DIR JOB.json  -> prints one JSON line.

JOB.json: ``{"weights": "w.npz", "out_dir": DIR, "tasks": [{"id": str, "dq_flag": int,
"qp": int, "qp_density": int, "lambda_scale": float, "max_num_no_rem": int,
"general_profile_idc": int, "repeats": int, "names": [str] | null}]}``. For each task every
named array of the npz (all when ``names`` is null) is quantized ``repeats`` times; the levels go
to ``DIR/<id>.npz`` under the same names. The result line maps each task id to
``{"qp_used": {name: qp}, "seconds": {name: median seconds per call}}``.
"""

import json
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, sys.argv[1])
import nnc_oracle as oracle  # noqa: E402


def main() -> None:
    with open(sys.argv[2]) as f:
        job = json.load(f)
    weights = dict(np.load(job["weights"]))
    results = {}
    for task in job["tasks"]:
        names = task.get("names") or list(weights)
        levels, qp_used, seconds = {}, {}, {}
        for name in names:
            times = []
            for _ in range(max(1, task.get("repeats", 1))):
                t = time.perf_counter()
                lv, qp = oracle.quantize(
                    weights[name],
                    task["dq_flag"],
                    task["qp"],
                    task.get("qp_density", 2),
                    task.get("lambda_scale", 0.0),
                    task.get("max_num_no_rem", 10),
                    task.get("general_profile_idc", 0),
                )
                times.append(time.perf_counter() - t)
            levels[name], qp_used[name] = lv, qp
            seconds[name] = statistics.median(times)
        np.savez(os.path.join(job["out_dir"], task["id"] + ".npz"), **levels)
        results[task["id"]] = {"qp_used": qp_used, "seconds": seconds}
    print(json.dumps(results))


if __name__ == "__main__":
    main()
