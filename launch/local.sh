#!/usr/bin/env bash
# One box: 1 generator server + N discriminator workers under torchrun.
#   launch/local.sh N [hydra overrides...]
#   launch/local.sh 10 data=mnist data.root=/datasets model=mnist_cnn mdgan.k=1
set -euo pipefail
if [[ $# -lt 1 || ! $1 =~ ^[1-9][0-9]*$ ]]; then
  echo "usage: $0 NUM_WORKERS [hydra overrides...]" >&2
  exit 2
fi
workers=$1
shift
exec torchrun --nproc_per_node=$((workers + 1)) --master-port="${MASTER_PORT:-29500}" -m mdgan_dist.train "$@"
