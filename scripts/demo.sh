#!/usr/bin/env bash
# The main job end to end on the generated MELD sample: set up (or reuse) the environment,
# generate the sample dataset, read it into its sample table, extract a feature store, pretrain
# the ConCluGen heads, evaluate them with the linear probe, run the paper-style study and
# classify one clip. Outputs go to ./demo/ (DEMO_DIR); a re-run reuses what is already there.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/env.sh"
cd "$root"
export PATH="$root/.venv/bin:$PATH"
out="${DEMO_DIR:-demo}"
clips="${DEMO_CLIPS:-48}"

[ -d "$out/meld-raw" ] || cli sample-data "$out/meld-raw" --dataset meld --clips "$clips" --seed 0
cli scan --dataset meld --root "$out/meld-raw" --out "$out/meld-samples.parquet"

# Random-weight backbones: no weights can be downloaded here, and the store records it.
cli extract --dataset meld --root "$out/meld-raw" --out "$out/meld-store" --weights random \
    --shard-size 12 --device cpu
cli store info "$out/meld-store"

# The paper's full objective, laptop-sized (--preset cpu); drop the preset on a GPU.
[ -f "$out/run-conclugen/checkpoints/last.pt" ] || \
  cli pretrain --store "$out/meld-store" --out "$out/run-conclugen" --objective conclugen \
      --preset cpu --epochs 30 --device cpu
cli eval --store "$out/meld-store" --run "$out/run-conclugen" --protocol linear --preset cpu \
    --device cpu

# Every objective and ablation, each evaluated, in one table (the paper's Tables 2-5).
cli study --store "$out/meld-store" --out "$out/study" --quick --device cpu

# A new video through the same preprocessing, backbones, heads and classifier.
clip="test/dia0_utt0"
transcript="$(python -c 'import sys, pyarrow.parquet as pq
rows = pq.read_table(sys.argv[1]).to_pylist()
print(next(r["transcript"] for r in rows if r["sample_id"] == sys.argv[2]))' \
  "$out/meld-samples.parquet" "$clip")"
cli predict "$out/meld-raw/test/output_repeated_splits_test/dia0_utt0.mp4" \
    --run "$out/run-conclugen" --transcript "$transcript" --device cpu

echo
echo "Results table: $out/study/results.md (bar chart: results.png)"
echo "Linear probe: $out/run-conclugen/eval/linear/ (metrics.json, confusion matrices, t-SNE)"
