#!/usr/bin/env bash
# Everything a machine with a GPU is needed for, in one go, the most important first, each part
# bounded in time so that a short loan of a GPU gets every part that fits:
#   1. the card, the driver and torch's versions;
#   2. pytest -m gpu (tests/test_gpu.py): the GPU paths, short;
#   3. launch/gpu_check.sh 2: longer jobs of the same paths (NCCL is skipped with one GPU: exit 3);
#   4. the one-GPU table: bench/suite.py --device cuda --sections gpu (N = 10, 25, 50, b = 100, the
#      default model and the paper's CIFAR10 CNN), 60 iterations a job, one job a figure (a second
#      call with --gpu-repeats 2 gives the spread).
# About 9 minutes at most, the parts' limits added up.
#   bench/gpu_session.sh OUT       (every log and table lands in OUT; MDGAN_PYTHON picks the python)
# Exit status: 0 when every part passed, 1 when one failed or ran out of time, 3 when gpu_check
# skipped a part (and nothing failed).
set -uo pipefail
out=${1:?usage: bench/gpu_session.sh OUT}
python=${MDGAN_PYTHON:-python3}
cd "$(dirname "$0")/.."
mkdir -p "$out"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 MDGAN_PYTHON="$python"
status=0
part() {  # part NAME SECONDS COMMAND...: its output in OUT/NAME.log, its verdict on stdout
  local name=$1 seconds=$2 code
  shift 2
  local started=$SECONDS
  timeout "$seconds" "$@" >"$out/$name.log" 2>&1
  code=$?
  echo "$name: exit $code after $((SECONDS - started)) s (limit $seconds s)"
  if ((code == 3 && status == 0)); then
    status=3
  elif ((code != 0 && code != 3)); then
    status=1
  fi
}

if ! "$python" -c "import sys, torch; sys.exit(not torch.cuda.is_available())"; then
  echo "no GPU visible to torch: nothing here needs this script" >&2
  exit 1
fi
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  "$python" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name())"
} >"$out/machine.txt" 2>&1
cat "$out/machine.txt"
part pytest_gpu 150 "$python" -m pytest -m gpu -q -p no:cacheprovider tests/test_gpu.py
part gpu_check 120 launch/gpu_check.sh 2
part gpu_table 270 "$python" bench/suite.py --device cuda --sections gpu --iterations 60 --gpu-repeats 1 \
  --json "$out/gpu_table.json"
exit $status
