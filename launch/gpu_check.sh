#!/usr/bin/env bash
# The GPU paths, checked on a machine with at least one GPU (CI has none):
#   1. models and data on the GPU, transport over gloo (staged through the CPU; with one GPU,
#      every rank shares it);
#   2. NCCL end to end, when there is one GPU per rank;
# and, when both ran, that they trained the same generator.
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
common=(train.iterations=300 log.every=100 log.progress=false checkpoint.every=150 mdgan.swap_every_epochs=0.5)
launch() {
  "$python" -m torch.distributed.run --nproc_per_node="$nproc" --master-port="${MASTER_PORT:-29512}" \
    -m mdgan_dist.train "${common[@]}" "$@"
}

echo "== gloo transport, models and data on the GPU ($gpus GPU(s), $nproc ranks)"
launch comm.backend=gloo train.device=cuda run.dir="$out/gloo"
tail -n 1 "$out/gloo/metrics.jsonl"

if [[ $gpus -lt $nproc ]]; then
  echo "== NCCL skipped: it needs one GPU per rank ($nproc), $gpus visible"
  exit 0
fi
echo "== NCCL transport, tensors on the GPU end to end"
launch comm.backend=nccl run.dir="$out/nccl"
tail -n 1 "$out/nccl/metrics.jsonl"
"$python" - "$out" <<'PY'
import sys, torch
gloo, nccl = (torch.load(f"{sys.argv[1]}/{name}/generator.pt", map_location="cpu")["generator"] for name in ("gloo", "nccl"))
worst = max((gloo[k].float() - nccl[k].float()).abs().max().item() for k in gloo)
print(f"largest difference between the generators of the two transports: {worst:.3g}")
PY
