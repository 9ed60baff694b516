"""Where isofast.analyze's time goes: pass 1 (Moments.update), the step
between the passes (one decomposition + the rank-one update), pass 2
(SecondPass.update), each timed as analysis._analyze runs them; plus numpy's
float32 GEMM rate on 4096³ in the same process (for the FLOP floor).

    python benches/profile_analyze_phases.py DATA.npy exact|fast
"""

import sys
import time
import json
import os
import numpy as np
from isofast.analysis import _first_pass

path, precision = sys.argv[1], sys.argv[2]
X = np.load(path, mmap_mode="r")
for s in range(0, X.shape[0], 65536):  # warm the page cache
    np.asarray(X[s : s + 65536]).sum()
t0 = time.perf_counter()
src, state, f64 = _first_pass(X, None, None, precision)
t1 = time.perf_counter()
ev_c, sp = state.second_pass(f64, raw=True, centered=True, n_threads=None, release=True, memory_budget=None)
t2 = time.perf_counter()
for arr, elem in src.chunks():
    sp.update(arr, elem, None)
t3 = time.perf_counter()
sp.results()
a = np.ones((4096, 4096), np.float32)
a @ a
t = time.perf_counter()
a @ a
g = 2 * 4096**3 / (time.perf_counter() - t)
print(
    json.dumps(
        {
            "precision": precision,
            "pass1_s": t1 - t0,
            "between_s": t2 - t1,
            "pass2_s": t3 - t2,
            "total_s": t3 - t0,
            "numpy_gemm_gflops": g / 1e9,
            "load": os.getloadavg()[0],
        }
    )
)
