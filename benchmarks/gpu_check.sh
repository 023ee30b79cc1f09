#!/usr/bin/env bash
# The CUDA checks in one run on a machine with one GPU, each part capped in time:
#   1. step cost at 512x512, batch 8+8: DeepLabV3+/ResNet-50 in float32, bf16 and
#      bf16 + channels-last, SegFormer/MiT-B2 in bf16 (each process alone on the GPU);
#   2. the CUDA-only tests and the torchrun tests (both ranks share the GPU over gloo, so DDP
#      runs with CUDA tensors and SyncBatchNorm), beside the grid;
#   3. the method comparison, `dualteacher compare` on the digit scenes (FRACTIONS, SEEDS,
#      WARMUP + ITERATIONS, by default one fraction at three times the CPU benchmark's
#      300 + 700 iterations: a 900-iteration supervised warm-up, then 2,100 per method;
#      persistent Dual Teacher and the all-labelled upper bound included), equal iterations,
#      float32 (train.amp=off, like the CPU runs), one evaluation at the end
#      (with many runs sharing the GPU, evaluations and start-up cost more than training), JOBS
#      runs at a time, given whatever is left of TOTAL_SECONDS less 30 s; finished runs are
#      tabulated (a stopped grid leaves a partial table, never a wrong one: unfinished runs
#      have no summary).
#
#   benchmarks/gpu_check.sh OUT [TOTAL_SECONDS] [JOBS]
#   environment: WARMUP=900 ITERATIONS=2100 SEEDS="0 1 2" FRACTIONS="1/32" PYTHON=python3
#                PARTS="step tests grid" (any subset, e.g. PARTS=grid to give the grid all the time)
set -u
out=${1:?usage: benchmarks/gpu_check.sh OUT [TOTAL_SECONDS] [JOBS]}
total_seconds=${2:-600}
jobs=${3:-10}
warmup=${WARMUP:-900}
iterations=${ITERATIONS:-2100}
read -r -a seeds <<< "${SEEDS:-0 1 2}"
read -r -a fractions <<< "${FRACTIONS:-1/32}"
python=${PYTHON:-python3}
parts=" ${PARTS:-step tests grid} "
mkdir -p "$out"
export PYTHONUNBUFFERED=1
grid=(--warmup "$warmup" --iterations "$iterations" --seeds "${seeds[@]}" --labeled "${fractions[@]}" --budget iterations
      --variants dual_teacher_persistent --upper-bound --out "$out/compare_gpu" --runs "$out/runs")
overrides=(train.amp=off train.eval_every=1000000)

{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  "$python" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name())"
  start=$SECONDS
  digits=$("$python" -c "from dualteacher.data.digits import ensure_digit_scenes; print(ensure_digit_scenes())")
  echo "$digits"
  echo "digit scenes ready in $((SECONDS - start)) s"
} > "$out/device.txt" 2>&1

[[ $parts == *" step "* ]] && for setting in "deeplabv3plus resnet50 off" "deeplabv3plus resnet50 bf16" \
               "deeplabv3plus resnet50 bf16 --channels-last" "segformer mit_b2 bf16"; do
  read -r arch encoder amp layout <<< "$setting"
  timeout 50 "$python" benchmarks/step_cost.py --arch "$arch" --encoder "$encoder" --amp "$amp" ${layout:-} \
    --size 512 --batch 8 --warmup 3 --repeats 8
  echo "exit status $?"
  echo
done > "$out/step_cost.txt" 2>&1

grid_seconds=$((total_seconds - SECONDS - 30))
if [[ $parts == *" grid "* ]]; then
  timeout "$grid_seconds" "$python" -m dualteacher compare --data "$digits" "${grid[@]}" --jobs "$jobs" \
    "${overrides[@]}" > "$out/grid.log" 2>&1 &
fi
if [[ $parts == *" tests "* ]]; then
  timeout 150 "$python" -m pytest -q -p no:cacheprovider -k "cuda or torchrun" \
    tests/engine/test_amp.py tests/methods/test_augment.py tests/engine/test_distributed.py > "$out/tests.log" 2>&1
  echo "pytest exit status $?" >> "$out/tests.log"
fi
if [[ $parts == *" grid "* ]]; then
  wait
  echo "grid stopped or finished after $((SECONDS)) s of this script (limit $total_seconds)" >> "$out/grid.log"
  "$python" -m dualteacher compare --data "$digits" "${grid[@]}" --report-only "${overrides[@]}" \
    > "$out/grid_report.log" 2>&1
fi
