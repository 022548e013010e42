#!/usr/bin/env bash
# The main job end to end on the generated MELD sample: set up (or reuse) the environment,
# generate the sample dataset, read it into its sample table, ... Outputs go to ./demo/.
# Re-running reuses what is already there.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/env.sh"
cd "$root"
export PATH="$root/.venv/bin:$PATH"
out="${DEMO_DIR:-demo}"
clips="${DEMO_CLIPS:-48}"

[ -d "$out/meld-raw" ] || cli sample-data "$out/meld-raw" --dataset meld --clips "$clips" --seed 0
cli scan --dataset meld --root "$out/meld-raw" --out "$out/meld-samples.parquet"
# Random-weight backbones: no weights can be downloaded here; the store records it.
cli extract --dataset meld --root "$out/meld-raw" --out "$out/meld-store" --weights random \
    --shard-size 12 --device cpu
# The heads: the paper's full objective, laptop-sized (`--preset cpu`); drop the preset on a GPU.
[ -f "$out/run-conclugen/checkpoints/last.pt" ] || \
  cli pretrain --store "$out/meld-store" --out "$out/run-conclugen" --objective conclugen \
      --preset cpu --epochs 30 --device cpu
