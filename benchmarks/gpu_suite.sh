#!/usr/bin/env bash
# Every GPU figure this project records, in one command (under 10 minutes on one GPU):
#
#   bash benchmarks/gpu_suite.sh [--wheels DIR]      # on the GPU machine
#   bash benchmarks/gpu_suite.sh --check             # only: versions, and the packages missing
#   bash benchmarks/gpu_suite.sh --dry-run           # on a CPU: toy sizes, the same code paths
#
# Sections, each a script under benchmarks/ with a time limit (a failing section is reported and
# the others still run; the exit status counts the failures):
#   1. the machine: GPU, driver, torch and CUDA versions;
#   2. backbone start-up: build + load of the four default backbones onto the GPU against the
#      time to read their weight files (backbone_startup.py);
#   3. encode throughput per backbone in units/s: model alone in float32, bf16 autocast and
#      bf16 + channels_last, and encode_batch as extraction runs it (backbone_throughput.py);
#   4. the trainer: data-path ratios (in memory / streamed vs batches ready on the GPU), conclugen
#      samples/s at batch 4096 and D 4096 (eager and torch.compile) with the fraction of the bf16
#      peak and peak GPU memory (trainer_throughput.py);
#   5. the tests marked gpu (CUDA paths of the streamed data and the backbones);
#   6. extraction: batched MTCNN frames/s (faces_detect.py), and clips/s end to end against
#      the backbones alone, with and without prefetching, the GPU's busy fraction and MELD's
#      projected time (extract_efficiency.py);
#   7. transcription: clips/s of a Speech2Text the size of the reference's recogniser (random
#      weights, a fixed number of tokens per clip) in GPU batches, and its cost per clip beside
#      extraction's (transcribe_cost.py).
#   8. the projection of VoxCeleb2's wall-clock on 1, 8 and 32 GPUs through Dask: section 6's
#      end-to-end clips/s and section 2's cold start-up with the driver and store costs that
#      benchmarks/scale.py measured (benchmarks/scale_measured.json; scale.py --project-from).
#
# Packages the GPU machine lacks are installed first, offline, from the wheels that
# benchmarks/gpu_wheels.sh gathers into build/gpu-wheels/ (carry that folder to the machine).
# tests/test_benchmarks.py runs --dry-run, so the suite cannot rot between GPU sessions.
set -uo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
dry=0
wheels="$root/build/gpu-wheels"
check=0
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) dry=1 ;;
    --check) check=1 ;;
    --wheels) wheels="$2"; shift ;;
    *) echo "usage: bash benchmarks/gpu_suite.sh [--dry-run | --check] [--wheels DIR]" >&2
       exit 2 ;;
  esac
  shift
done
python="${PYTHON:-}"
if [ -z "$python" ]; then
  if [ -x "$root/.venv/bin/python" ]; then python="$root/.venv/bin/python"; else python=python3; fi
fi
# The scripts import the project from the working tree; nothing needs installing for that.
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
failed=0
started=$SECONDS
figures="$(mktemp -d)"  # the outputs section 7 takes its inputs from
trap 'rm -rf "$figures"' EXIT

section() { printf '\n==== %s (%ds)\n' "$1" "$((SECONDS - started))"; }

# run LIMIT_S COMMAND...: a failure or a timeout is counted and reported; the suite goes on.
# keep FILE LIMIT_S COMMAND...: the same, and the output is kept in $figures/FILE for section 7.
run() {
  local limit=$1 status
  shift
  timeout --kill-after=10 "$limit" "$@"
  status=$?
  if [ "$status" -ne 0 ]; then
    failed=$((failed + 1))
    echo "FAILED (exit $status$([ "$status" -eq 124 ] && echo ", over ${limit}s")): $*"
  fi
}
keep() {
  local file="$figures/$1"
  shift
  run "$@" >"$file" 2>&1
  cat "$file"
}

# Distributions the suite or the extraction hooks import, each with a module that shows it.
needed=(dask:dask distributed:distributed av:av facenet_pytorch:facenet-pytorch yaml:pyyaml
        psutil:psutil fsspec:fsspec rich:rich torchvision:torchvision torchaudio:torchaudio
        safetensors:safetensors sklearn:scikit-learn scipy:scipy pytest:pytest
        pytest_timeout:pytest-timeout)

missing_distributions() {
  local pair
  for pair in "${needed[@]}"; do
    "$python" -c "import ${pair%%:*}" 2>/dev/null || echo "${pair#*:}"
  done
}

install_missing() {
  local missing=() name left=()
  mapfile -t missing < <(missing_distributions)
  if [ ${#missing[@]} -eq 0 ]; then
    echo "every package is there"
    return 0
  fi
  echo "missing: ${missing[*]}; installing from $wheels"
  for name in "${missing[@]}"; do
    # facenet-pytorch's metadata pins torch<2.3; it runs on the current torch (see README).
    local deps=()
    [ "$name" = facenet-pytorch ] && deps=(--no-deps)
    "$python" -m pip install --quiet --no-index --find-links "$wheels" "${deps[@]}" "$name" \
      2>/dev/null || left+=("$name")
  done
  if [ ${#left[@]} -gt 0 ]; then
    echo "not installed (no wheel in $wheels; see benchmarks/gpu_wheels.sh): ${left[*]}"
    return 1
  fi
}

# ---- The extraction figures: MTCNN frames/s by batch size, and extraction clips/s end to end
# against the backbones alone, with and without prefetching, the GPU's busy fraction and
# MELD's projected time (the default real-size backbones, random weights).
extraction_figures() {
  if [ "$dry" -eq 1 ]; then
    keep extract.txt 180 "$python" benchmarks/extract_efficiency.py --device cpu --clips 1 \
      --repeats 1 --toy --skip-cluster --batch-clips 1
  else
    keep extract.txt 300 "$python" benchmarks/extract_efficiency.py --device cuda --clips 48 \
      --repeats 1 --skip-cluster
  fi
}
mtcnn_figures() {
  if [ "$dry" -eq 1 ]; then
    run 60 "$python" benchmarks/faces_detect.py --device cpu --batches 1,2 --min-faces 40 \
      --repeats 1 --skip-rate
  else
    run 90 "$python" benchmarks/faces_detect.py --device cuda --batches 1,32,128 \
      --min-faces 20 --repeats 2 --skip-rate
  fi
}

section "1. machine"
if [ "$check" -eq 1 ]; then  # what a GPU session should carry, in seconds
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
  "$python" -c "import platform, torch; print('python', platform.python_version(), '| torch',
  torch.__version__)"
  echo "missing: $(missing_distributions | tr '\n' ' ')"
  exit 0
fi
if [ "$dry" -eq 1 ]; then
  echo "dry run: CPU, toy sizes (the figures mean nothing)"
  export OMP_NUM_THREADS=1  # shared CPUs: spinning OpenMP threads only contend
  device=cpu
else
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
  install_missing || { failed=$((failed + 1)); echo "FAILED: installing the missing packages"; }
  device=cuda
fi
"$python" -c "import platform, torch; print('python', platform.python_version(), '| torch',
torch.__version__, '| CUDA', torch.version.cuda, '| GPU',
torch.cuda.get_device_name() if torch.cuda.is_available() else None)"

section "2. backbone start-up"
if [ "$dry" -eq 1 ]; then
  keep startup.txt 120 "$python" benchmarks/backbone_startup.py --keys audio --repeats 1 \
    --device cpu
else
  keep startup.txt 150 "$python" benchmarks/backbone_startup.py --repeats 2 --device cuda \
    --dir "$root/build/startup-weights"
fi

section "3. encode throughput per backbone"
if [ "$dry" -eq 1 ]; then
  run 120 "$python" benchmarks/backbone_throughput.py --toy --device cpu --seconds 0.01
else
  run 120 "$python" benchmarks/backbone_throughput.py --device cuda --seconds 2
fi

section "4. trainer"
if [ "$dry" -eq 1 ]; then
  run 120 "$python" benchmarks/trainer_throughput.py --device cpu --rows 256 --batch 64 \
    --dim 16 --steps 1 --rounds 1 --file-rows 64 --paper --paper-dim 16 --paper-batch 64 \
    --skip-memory
else
  run 240 "$python" benchmarks/trainer_throughput.py --device cuda --rows 65536 --batch 4096 \
    --dim 4096 --steps 10 --rounds 2 --file-rows 4096 --compile --skip-memory
fi

section "5. tests marked gpu"
if [ "$dry" -eq 1 ]; then
  echo "skipped in a dry run (they need CUDA)"
else
  run 120 "$python" -m pytest -q -m gpu -p no:cacheprovider tests/heads/test_data.py \
    tests/pipeline/test_backbones.py tests/pipeline/test_backbones_device.py
fi

section "6. extraction"
mtcnn_figures
extraction_figures

section "7. transcription"
if [ "$dry" -eq 1 ]; then
  run 120 "$python" benchmarks/transcribe_cost.py --toy --device cpu --clips 2 --batch-clips 2
else
  run 240 "$python" benchmarks/transcribe_cost.py --device cuda --clips 64 --batch-clips 32
fi

section "8. projection: VoxCeleb2 on 1, 8 and 32 GPUs"
rate=$(sed -n 's/.*end-to-end: \([0-9.]*\) clips\/s.*/\1/p' "$figures/extract.txt" | head -n 1)
startup=$(sed -n 's/^start-up, real cold *\([0-9.]*\) s.*/\1/p' "$figures/startup.txt" | head -n 1)
inputs=()
[ -n "$rate" ] && inputs+=(--gpu-clips-per-s "$rate")
[ -n "$startup" ] && inputs+=(--worker-start-s "$startup")
run 60 "$python" benchmarks/scale.py --project-from benchmarks/scale_measured.json "${inputs[@]}"

section "done: $failed failed section(s)"
[ "$failed" -eq 0 ]
