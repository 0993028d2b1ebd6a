#!/usr/bin/env bash
# The GPU paths, checked on a machine with at least one GPU (CI has none):
#   1. models and data on the GPU, transport over gloo (staged through the CPU; with one GPU,
#      every rank shares it);
#   2. that a short run on the GPU trains the generator a CPU run trains (float tolerance);
#   3. NCCL end to end, when there is one GPU per rank, and that it trains what gloo trains.
#   launch/gpu_check.sh [NUM_WORKERS]        (default 2; MDGAN_PYTHON picks the python)
set -euo pipefail
workers=${1:-2}
nproc=$((workers + 1))
python=${MDGAN_PYTHON:-python3}
gpus=$("$python" -c "import torch; print(torch.cuda.device_count() if torch.cuda.is_available() else 0)")
if [[ $gpus -lt 1 ]]; then
  echo "no GPU visible: nothing to check" >&2
  exit 2
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
launch "${short[@]}" comm.backend=gloo train.device=cuda run.dir="$out/short_gpu"
launch "${short[@]}" comm.backend=gloo train.device=cpu run.dir="$out/short_cpu"
compare short_gpu short_cpu

if [[ $gpus -lt $nproc ]]; then
  echo "== NCCL skipped: it needs one GPU per rank ($nproc), $gpus visible"
  exit 0
fi
echo "== NCCL transport, tensors on the GPU end to end"
launch comm.backend=nccl run.dir="$out/nccl"
tail -n 1 "$out/nccl/metrics.jsonl"
compare gloo nccl
