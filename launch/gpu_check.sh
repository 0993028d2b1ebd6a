#!/usr/bin/env bash
# The GPU paths, checked on a machine with at least one GPU (CI has none):
#   1. gloo: models and data on the GPU, transport over gloo (staged through the CPU; with one
#      GPU, every rank shares it);
#   2. gpu-vs-cpu: that a short run on the GPU trains the generator a CPU run trains (float
#      tolerance);
#   3. nccl: NCCL end to end, when there is one GPU per rank, and that it trains what gloo trains.
#   launch/gpu_check.sh [NUM_WORKERS]        (default 2; MDGAN_PYTHON picks the python)
# Exit status: 0 when every part ran and passed; 3 when a part was skipped (each one printed as a
# SKIPPED line), since a check that did not run proves nothing; anything else is a failure.
set -euo pipefail
workers=${1:-2}
nproc=$((workers + 1))
python=${MDGAN_PYTHON:-python3}
skipped=()
skip() {  # loud on purpose: a skipped part must not read as a pass
  echo "SKIPPED: $1: $2" >&2
  skipped+=("$1")
}
finish() {
  if ((${#skipped[@]})); then
    echo "gpu_check: NOT A FULL CHECK, ${#skipped[@]} part(s) SKIPPED: ${skipped[*]}" >&2
    exit 3
  fi
  echo "gpu_check: every part ran and passed"
  exit 0
}

gpus=$("$python" -c "import torch; print(torch.cuda.device_count() if torch.cuda.is_available() else 0)")
if [[ $gpus -lt 1 ]]; then
  for part in gloo gpu-vs-cpu nccl; do
    skip "$part" "no GPU visible to torch"
  done
  finish
fi
out=$(mktemp -d)
common=(train.iterations=300 log.every=100 log.progress=false checkpoint.every=150 mdgan.swap_every_epochs=0.5 eval.every=0)
launch() {
  "$python" -m torch.distributed.run --nproc_per_node="$nproc" --master-port="${MASTER_PORT:-29512}" \
    -m mdgan_dist.train "${common[@]}" "$@"
}

echo "== gloo transport, models and data on the GPU ($gpus GPU(s), $nproc ranks)"
launch comm.backend=gloo train.device=cuda run.dir="$out/gloo"
tail -n 1 "$out/gloo/metrics.jsonl"

compare() {  # largest parameter difference between the final generators of two runs
  "$python" - "$out/$1/generator.pt" "$out/$2/generator.pt" <<'PY'
import sys, torch
a, b = (torch.load(path, map_location="cpu")["generator"] for path in sys.argv[1:])
worst = max((a[k].double() - b[k].double()).abs().max().item() for k in a)
print(f"largest difference between the two generators: {worst:.3g}")
sys.exit(0 if worst < 1e-3 else 1)
PY
}
echo "== 5 iterations on the GPU against 5 on the CPU (swaps included)"
short=(train.iterations=5 mdgan.swap_every_epochs=0.01)
# Without TF32, which cuDNN uses for float32 convolutions by default: the comparison is of the
# code paths, not of TF32's rounding.
NVIDIA_TF32_OVERRIDE=0 launch "${short[@]}" comm.backend=gloo train.device=cuda run.dir="$out/short_gpu"
launch "${short[@]}" comm.backend=gloo train.device=cpu run.dir="$out/short_cpu"
compare short_gpu short_cpu

if [[ $gpus -lt $nproc ]]; then
  hint=""
  if [[ $gpus -ge 2 ]]; then
    hint="; launch/gpu_check.sh $((gpus - 1)) runs it on this machine"
  fi
  skip nccl "NCCL needs one GPU per rank: $nproc ranks, $gpus GPU(s) visible$hint"
  finish
fi
echo "== NCCL transport, tensors on the GPU end to end"
launch comm.backend=nccl run.dir="$out/nccl"
tail -n 1 "$out/nccl/metrics.jsonl"
compare gloo nccl
finish
