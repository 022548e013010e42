"""What transcription costs per clip, beside extraction, and its clips/s on a GPU.

Prints, measured in one run on this machine (or GPU), on the clips of a generated VoxCeleb2
sample (espeak-ng speech, 2-4 s utterances):

1. transcription seconds per clip (PyAV decoding + the recogniser, one process, model loaded)
   with a Speech2Text of the reference model's size (``facebook/s2t-large-librispeech-asr``:
   d_model 1024, 12 encoder and 6 decoder layers, 10,000 tokens), random weights, forced to
   decode ``--tokens`` tokens per clip (about what a real transcript of such an utterance
   takes), in batches of ``--batch-clips``; and clips/s;
2. extraction seconds per clip on the same clips (VoxCeleb2's policy: no face cropping) with
   the default backbones at their real sizes (random weights), one batch as `cli extract`
   runs it; and the ratio transcription / extraction;
3. with ``--pocketsphinx`` (the package installed): PocketSphinx's seconds per clip and its
   word error rate against the spoken transcripts (a real recogniser, no download).

Usage: python benchmarks/transcribe_cost.py [--clips 8] [--device cpu|cuda] [--toy]
``--toy`` uses a tiny Speech2Text and only the text backbone (for the suite's dry run).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from pipeline.asr import AsrSettings, HfRecognizer, load_recognizer
from pipeline.datasets import scan
from pipeline.datasets.transcripts import read_sidecar
from pipeline.extract import Timer, extract_clips
from pipeline.extract_config import load_extract_config
from pipeline.manifest import load_manifest
from pipeline.models import load_models
from pipeline.sample_data import generate
from pipeline.transcribe import transcribe_clips

S2T_LARGE = {"vocab_size": 10_000, "d_model": 1024, "encoder_layers": 12, "decoder_layers": 6,
             "encoder_attention_heads": 16, "decoder_attention_heads": 16,
             "encoder_ffn_dim": 4096, "decoder_ffn_dim": 4096, "max_source_positions": 6000,
             "max_target_positions": 1024, "num_conv_layers": 2, "conv_channels": 1024,
             "input_feat_per_channel": 80}
S2T_TOY = {**S2T_LARGE, "vocab_size": 64, "d_model": 16, "encoder_layers": 1,
           "decoder_layers": 1, "encoder_attention_heads": 2, "decoder_attention_heads": 2,
           "encoder_ffn_dim": 32, "decoder_ffn_dim": 32, "conv_channels": 16}


def speech2text_folder(folder: Path, sizes: dict[str, int], tokens: int) -> Path:
    """A random-weight Speech2Text saved with a word-level tokenizer; ``generate`` is forced
    to ``tokens`` new tokens (a random model would stop at a random length)."""
    from tokenizers import Tokenizer, models
    from transformers import (PreTrainedTokenizerFast, Speech2TextConfig,
                              Speech2TextFeatureExtractor, Speech2TextForConditionalGeneration)

    config = Speech2TextConfig(**sizes, pad_token_id=1, bos_token_id=0, eos_token_id=2,
                               decoder_start_token_id=2)
    model = Speech2TextForConditionalGeneration(config)
    model.generation_config.min_new_tokens = tokens
    model.generation_config.num_beams = 1
    model.save_pretrained(folder)
    vocab = {f"w{i}": i for i in range(sizes["vocab_size"])}
    tok = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel(vocab, "w3")),
                                  bos_token="w0", pad_token="w1", eos_token="w2",
                                  unk_token="w3")
    tok.save_pretrained(folder)
    Speech2TextFeatureExtractor(feature_size=80, num_mel_bins=80).save_pretrained(folder)
    return folder


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed_transcription(rows: list[dict[str, Any]], recognizer: Any, batch_clips: int,
                        device: str) -> tuple[float, list[Any]]:
    transcribe_clips(rows[:batch_clips], recognizer, batch_clips)  # warm-up
    synchronize(device)
    start = time.perf_counter()
    results = transcribe_clips(rows, recognizer, batch_clips)
    synchronize(device)
    return time.perf_counter() - start, results


def timed_extraction(rows: list[dict[str, Any]], device: str, toy: bool) -> float:
    modalities = ["text"] if toy else ["frames_2d", "frames_3d", "audio", "text"]
    cfg = load_extract_config(None, modalities=modalities,
                              weights={m: "random" for m in modalities})
    policy = load_manifest("voxceleb2").faces
    models = load_models(cfg, policy, device)
    extract_clips(rows[:1], cfg, models, policy)  # warm-up
    synchronize(device)
    start = time.perf_counter()
    extract_clips(rows, cfg, models, policy, Timer())
    synchronize(device)
    return time.perf_counter() - start


def word_error_rate(reference: list[str], hypothesis: list[str]) -> float:
    """Word-level Levenshtein distance over all clips / reference words."""
    errors = words = 0
    for ref, hyp in zip(reference, hypothesis, strict=True):
        r, h = normalise(ref), normalise(hyp)
        row = list(range(len(h) + 1))
        for i, word in enumerate(r, 1):
            prev, row[0] = row[0], i
            for j, other in enumerate(h, 1):
                prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (word != other))
        errors, words = errors + row[-1], words + len(r)
    return errors / max(1, words)


def normalise(text: str) -> list[str]:
    return "".join(c if c.isalnum() or c == "'" else " " for c in text.lower()).split()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=8)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-clips", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=20)
    parser.add_argument("--toy", action="store_true")
    parser.add_argument("--pocketsphinx", action="store_true")
    parser.add_argument("--skip-extraction", action="store_true")
    args = parser.parse_args()
    if args.device == "cpu":
        torch.set_num_threads(1)  # as one extraction worker runs
    with tempfile.TemporaryDirectory() as tmp:
        raw = generate("voxceleb2", Path(tmp) / "raw", clips=args.clips, seed=0)
        spoken = read_sidecar(raw / "transcripts.csv")
        rows = scan("voxceleb2", raw).samples.to_pylist()
        torch.manual_seed(0)
        folder = speech2text_folder(Path(tmp) / "s2t", S2T_TOY if args.toy else S2T_LARGE,
                                    args.tokens)
        settings = AsrSettings(model=str(folder), max_new_tokens=args.tokens,
                               batch_clips=args.batch_clips)
        recognizer = HfRecognizer(settings, args.device)
        took, _ = timed_transcription(rows, recognizer, args.batch_clips, args.device)
        gpu = torch.cuda.get_device_name() if args.device != "cpu" else "1 torch thread"
        print(f"machine: {args.device} ({gpu}), {len(rows)} VoxCeleb2 sample clips")
        print(f"transcription (Speech2Text {'toy' if args.toy else 'large'}, {args.tokens} "
              f"tokens/clip, batch {args.batch_clips}): {took / len(rows):.3f} s/clip, "
              f"{len(rows) / took:.2f} clips/s")
        if not args.skip_extraction:
            extracted = timed_extraction(rows, args.device, args.toy)
            print(f"extraction ({'text only' if args.toy else 'the four default backbones'}, "
                  f"random weights): {extracted / len(rows):.3f} s/clip")
            print(f"ratio transcription / extraction per clip: {took / extracted:.2f}")
        if args.pocketsphinx:
            sphinx = load_recognizer(AsrSettings(model="pocketsphinx"), "cpu")
            took, results = timed_transcription(rows, sphinx, 1, "cpu")
            heard = {r.sample_id: r.transcript for r in results if r.transcript is not None}
            wer = word_error_rate([spoken[i] for i in heard], list(heard.values()))
            print(f"pocketsphinx: {took / len(rows):.3f} s/clip, word error rate {wer:.3f} "
                  f"over {len(heard)} clips")


if __name__ == "__main__":
    main()
