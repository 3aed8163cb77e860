"""Times NNCodec 2.1.3's coder on given levels; run by bench_coder.py with the reference's Python.

Usage: python _reference_coder.py SHARED_TOOLS_DIR JOB.json  -> prints a JSON result line.
Never imported by nncabac itself.
"""

import json
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, sys.argv[1])
import nnc_oracle as oracle  # noqa: E402


def main() -> None:
    job = json.load(open(sys.argv[2]))
    levels = np.load(job["levels"])
    layer = dict(
        levels=levels,
        shape=list(levels.shape),
        dq_flag=job["dq_flag"],
        num_gtx_flags=job["num_gtx_flags"],
        param_opt_flag=job["param_opt_flag"],
        general_profile_idc=job["general_profile_idc"],
        parent_node_id_present_flag=0,
    )
    enc_t, dec_t, data = [], [], b""
    for _ in range(job["repeats"]):
        t = time.perf_counter()
        data = oracle.encode_stream([layer])
        enc_t.append(time.perf_counter() - t)
    for _ in range(job["repeats"]):
        t = time.perf_counter()
        outs, _, consumed = oracle.decode_stream(data, [layer])
        dec_t.append(time.perf_counter() - t)
    with open(job["out"], "wb") as f:
        f.write(data)
    print(
        json.dumps(
            {
                "encode_s": statistics.median(enc_t),
                "decode_s": statistics.median(dec_t),
                "num_bytes": len(data),
                "consumed": consumed,
            }
        )
    )


if __name__ == "__main__":
    main()
