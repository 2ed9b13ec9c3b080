#!/usr/bin/env bash
# The GPU figures of docs/PERFORMANCE.md in one run on a machine with an NVIDIA GPU, in at
# most 8 minutes: what is usable (vn3d doctor), the GPU tests, TensorRT engine parity and
# latency of the project's own networks (fp16/fp32, batch 1/8/32/64), MediaPipe's networks
# on ONNX Runtime's CUDA and TensorRT providers (parity with MediaPipe on the GRID clips,
# ms per call at batch 1/8/32/64, tracker ms per frame, frames per second for 8 and 32
# sessions through the batchers), and the render at 512² on the GPU's EGL device. The
# steps' limits add up to 8 minutes.
#
#   make gpu                     # once: the project with its gpu extra (onnxruntime-gpu, TensorRT)
#   bash scripts/gpu_check.sh    # PYTHON=... to use another interpreter, OUT=... for the results
#
# Each step has its own time limit and a failed step does not stop the others; the summary
# at the end lists each step's exit status. Results (JSON and logs) go to $OUT.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
OUT=${OUT:-out/gpu_check}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
declare -a SUMMARY=()

step() {  # step NAME SECONDS COMMAND...: run with a time limit, log to $OUT/NAME.log
  local name=$1 limit=$2
  shift 2
  echo
  echo "== $name (at most ${limit} s) =="
  local start=$SECONDS
  timeout "$limit" "$@" 2>&1 | tee "$OUT/$name.log"
  local rc=${PIPESTATUS[0]}
  SUMMARY+=("$(printf '%-22s rc %-3s %4s s' "$name" "$rc" $((SECONDS - start)))")
}

step doctor 30 "$PY" -m vn3d.cli doctor
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1 | tee "$OUT/gpu.txt"

# the tests that skip on CPU machines, and the CPU tests of the same paths
step gpu_tests 80 "$PY" -m pytest -q -x tests/test_trt_build.py tests/test_landmarkers.py \
  tests/test_mediapipe_onnx.py tests/test_nchwc_rewrite.py tests/test_face_geometry.py

# TensorRT engines of the project's own networks (the landmark encoder), fp16 and fp32
ENCODER=$("$PY" -c "from engines.encoder.network import encoder_onnx; print(encoder_onnx())")
step trt_engines 90 "$PY" scripts/gpu_engines_check.py "$ENCODER" \
  --out "$OUT/trt_engines.json" --iters 100

# MediaPipe's networks: CUDA provider, then TensorRT (fp16; engines cached on first use)
step landmarker_cuda 90 "$PY" scripts/bench_landmarker.py --backend onnxruntime-cuda \
  --clips 0-3 --batches 1,8,32,64 --sessions 32 --repeats 1 --out "$OUT/landmarker_cuda.json"
# TensorRT builds an engine per new range of batch sizes on first use (cached after)
step landmarker_trt 150 "$PY" scripts/bench_landmarker.py --backend tensorrt \
  --clips 0-3 --batches 1,8,32,64 --sessions 32 --repeats 1 --out "$OUT/landmarker_trt.json"

# the render on the GPU's EGL device (vn3d doctor names it)
step render 40 "$PY" scripts/bench_render.py --frames 120 --sizes 512 --out "$OUT/render.json"

echo
echo "== summary ($SECONDS s) =="
printf '%s\n' "${SUMMARY[@]}" | tee "$OUT/summary.txt"
