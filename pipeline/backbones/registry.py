"""The backbone registry: one entry per backbone, owning its spec, build and published weights.

:data:`REGISTRY` maps a name to a :class:`Backbone`: the frozen spec (store key, dim,
preprocessing constants, default weights), the ``build`` function of its module, the published
checkpoints it knows (:mod:`pipeline.backbones.catalogue`), and how its weights load (a
state-dict file, or a Hugging Face folder or id). Everything that needs to know about a
backbone's weights (loading, the client's check before a run, ``cli weights``) asks its entry.

Names outside the registry carry an explicit prefix: ``hf:org/model`` (a Hugging Face text
encoder, through the Hugging Face cache) and ``dir:PATH`` (a ``save_pretrained`` folder of a
text encoder). A bare unknown name is an error that lists the registered names and the
prefixes: nothing falls back silently.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlparse

from pipeline.backbones import catalogue, davenet, download, resnet2d, resnet3d, text, video3d_tv
from pipeline.backbones.catalogue import WeightsEntry
from pipeline.backbones.encoder import Encoder
from pipeline.backbones.weights import RANDOM, WeightsError, WeightsSource
from pipeline.errors import UserError
from pipeline.extract_config import DEFAULT_BACKBONES

if TYPE_CHECKING:
    from pipeline.extract_config import ExtractConfig

log = logging.getLogger(__name__)

BackboneSpec = (resnet2d.Resnet2dSpec | resnet3d.Resnet3dSpec
                | video3d_tv.TorchvisionVideoSpec | davenet.DavenetSpec | text.TextSpec)
Builder = Callable[[Any, "str | WeightsSource | None", str], Encoder]
HUB_PREFIX, DIR_PREFIX = "hf:", "dir:"


class BackboneError(UserError, ValueError):
    """A backbone name that is not registered and carries no ``hf:`` / ``dir:`` prefix."""


class WeightsUnavailable(UserError, ValueError):
    """Checkpoints missing or wrong before a run: one line per checkpoint."""


@dataclass(frozen=True)
class Backbone:
    """A registered backbone.

    Attributes:
        spec: the frozen spec (store key, dim, preprocessing, default weights identifier).
        build: ``build(spec, weights, device) -> Encoder`` of the backbone's module.
        summary: one line for listings.
        downloads: the published checkpoints it knows, by weights identifier.
        loads: ``state_dict`` (a checkpoint file) or ``hf`` (a Hugging Face folder or id).
    """

    spec: BackboneSpec
    build: Builder
    summary: str
    downloads: tuple[WeightsEntry, ...] = ()
    loads: Literal["state_dict", "hf"] = "state_dict"

    @property
    def name(self) -> str:
        return self.spec.name

    def download(self, identifier: str | None) -> WeightsEntry | None:
        """The published checkpoint known as ``identifier``, or None."""
        return next((d for d in self.downloads if d.identifier == identifier), None)


REGISTRY: dict[str, Backbone] = {
    "resnet152": Backbone(resnet2d.RESNET152, resnet2d.build,
                          "torchvision ResNet-152 (ImageNet), 1-fps face crops",
                          (catalogue.RESNET152_V2, catalogue.RESNET152_V1)),
    "resnet3d101": Backbone(resnet3d.RESNET3D101, resnet3d.build,
                            "Hara-style 3D ResNet-101 (Kinetics-400), 16-frame windows",
                            (catalogue.RESNET3D101_KINETICS,)),
    "r3d_18": Backbone(video3d_tv.R3D_18, video3d_tv.build,
                       "torchvision r3d_18 (Kinetics-400), 16-frame windows",
                       (catalogue.R3D_18_K400,)),
    "r2plus1d_18": Backbone(video3d_tv.R2PLUS1D_18, video3d_tv.build,
                            "torchvision r2plus1d_18 (Kinetics-400), 16-frame windows",
                            (catalogue.R2PLUS1D_18_K400,)),
    "resdavenet": Backbone(davenet.RESDAVENET, davenet.build,
                           "ResDAVEnet-VQ without quantisation (the reference code's audio "
                           "model), 40-band log-mel", (catalogue.RDVQ_00000,)),
    "davenet": Backbone(davenet.DAVENET, davenet.build,
                        "DAVEnet's audio branch, 40-band log-mel (no published checkpoint)"),
    "distilbert-sst2": Backbone(text.DISTILBERT_SST2, text.build,
                                "DistilBERT fine-tuned on SST-2 (the paper's text model)",
                                (catalogue.DISTILBERT_SST2,), loads="hf"),
    "emotion-distilroberta": Backbone(text.EMOTION_DISTILROBERTA, text.build,
                                      "emotion DistilRoBERTa (the reference code's text "
                                      "model), through the Hugging Face cache", loads="hf"),
}

#: name -> spec, for readers that need only the specs.
BACKBONES: dict[str, BackboneSpec] = {name: b.spec for name, b in REGISTRY.items()}


def get_backbone(name: str) -> Backbone:
    """The registry entry ``name``, or a text backbone for ``hf:ID`` / ``dir:PATH``.

    Raises:
        BackboneError: any other name, listing the registered ones and the prefixes.
    """
    if name in REGISTRY:
        return REGISTRY[name]
    for prefix in (HUB_PREFIX, DIR_PREFIX):
        if name.startswith(prefix) and name[len(prefix):]:
            target = name[len(prefix):]
            if prefix == DIR_PREFIX and not Path(target).expanduser().is_dir():
                raise BackboneError(f"backbone '{name}': {target} is not a folder")
            spec = dataclasses.replace(text.hub_spec(target), name=name)
            return Backbone(spec, text.build, f"text encoder {target}", loads="hf")
    hint = ""
    if Path(name).expanduser().is_dir():
        hint = f"; for the text model in that folder write '{DIR_PREFIX}{name}'"
    elif "/" in name:
        hint = f"; for a Hugging Face text model write '{HUB_PREFIX}{name}'"
    raise BackboneError(f"unknown backbone '{name}'{hint}; registered: {', '.join(REGISTRY)}"
                        f" (or '{HUB_PREFIX}ORG/MODEL', '{DIR_PREFIX}PATH' for text)")


def get_spec(name: str) -> BackboneSpec:
    """The spec of backbone ``name`` (see :func:`get_backbone`)."""
    return get_backbone(name).spec


def load_encoder(name: str, *, weights: str | None = None, device: str = "cpu",
                 batch_size: int | None = None) -> Encoder:
    """Build the frozen encoder of backbone ``name``.

    Args:
        name: a registered name, ``hf:ID`` or ``dir:PATH``.
        weights: ``None`` for the backbone's default; ``"random"`` (logged loudly, provenance
            ``weights="random"``); a published checkpoint's identifier (``IMAGENET1K_V2``,
            ``RDVQ_00000``), found in the weights folder or downloaded and verified; a local
            state-dict file, or for text a ``save_pretrained`` folder or a hub id; a URL.
        device: ``"cpu"`` or ``"cuda[:i]"`` (bf16 autocast on CUDA).
        batch_size: units per backbone call (frames, windows, clips) instead of the spec's.

    Raises:
        BackboneError: unknown name. ValueError: bad batch size.
        WeightsError: weights that cannot be resolved, fetched, read, or do not fit.
    """
    backbone = get_backbone(name)
    spec = backbone.spec
    if batch_size is not None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        spec = dataclasses.replace(spec, batch_size=batch_size)
    # The client checked every file before the run; a worker compares sizes only.
    return backbone.build(spec, _source(backbone, weights, fetch=True, full_check=False),
                          device)


def _source(backbone: Backbone, weights: str | None, *, fetch: bool,
            full_check: bool) -> str | WeightsSource | None:
    """A published checkpoint as a local source; any other argument as it is."""
    entry = backbone.download(weights if weights is not None else
                              backbone.spec.default_weights)
    if entry is None:
        return weights
    path = download.ensure(entry, download=fetch, full_check=full_check)
    return WeightsSource(entry.identifier, "folder" if entry.folder else "file", str(path),
                         revision=entry.revision)


def weights_problem(backbone: str, weights: str | None, *, fetch: bool = False) -> str | None:
    """Why ``weights`` of ``backbone`` cannot be loaded here, or None.

    Random weights load anywhere (their initialisation is seeded); a local file or folder if it
    exists; a published checkpoint if it is in the weights folder and checks out (with
    ``fetch``, it is downloaded and verified when missing); a hub id if it is in the Hugging
    Face cache (with ``fetch``, downloaded into it); a URL if it is in the torch hub cache
    (with ``fetch``, downloaded).

    Args:
        backbone: a backbone name.
        weights: the weights argument (``None``: the backbone's default).
        fetch: download what is missing (the client before a run) and hash every file found;
            without it nothing is downloaded and files are checked by size only.
    """
    entry = get_backbone(backbone)
    ident = weights if weights is not None else entry.spec.default_weights
    if ident is None:
        return (f"{backbone}, which has no published checkpoint"
                f"{getattr(entry.spec, 'checkpoint_hint', '')}: pass --weights "
                f"{entry.spec.key}=PATH (or =random for a smoke run)")
    if ident == RANDOM:
        return None
    if ident == "none":
        return f"backbone {backbone!r} without recorded weights"
    published = entry.download(ident)
    if published is not None:
        try:
            _source(entry, ident, fetch=fetch, full_check=fetch)
        except WeightsError as err:
            return f"{backbone} weights {ident!r}: {err}"
        return None
    local = Path(ident).expanduser()
    if local.exists():
        if fetch and local.is_file() and entry.loads != "hf":
            # On the client, before any worker: a file that is no state dict (text, a
            # truncated download) is named here, not in a worker's traceback.
            from pipeline.backbones.weights import read_state_file

            try:
                read_state_file(local)
            except WeightsError as err:
                return str(err)
        return None
    if ident.startswith(("http://", "https://")):
        return _url_problem(backbone, ident, fetch)
    if entry.loads == "hf" and not ident.startswith(("/", ".", "~")):
        return _hub_problem(backbone, ident, fetch)
    known = ", ".join(d.identifier for d in entry.downloads) or "none"
    return (f"{backbone} weights {ident!r}, a file or folder that does not exist (published "
            f"checkpoints of {backbone}: {known})")


def _url_problem(backbone: str, url: str, fetch: bool) -> str | None:
    import torch.hub

    from pipeline.backbones.weights import download as download_url

    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(url).path).name
    if cached.is_file():
        return None
    if not fetch:
        return (f"{backbone} weights {url!r}, which need a download and are not cached at "
                f"{cached}; download the file by other means and put it there")
    try:
        download_url(url)
    except WeightsError as err:
        return f"{backbone} weights: {err}"
    return None


def _hub_problem(backbone: str, model_id: str, fetch: bool) -> str | None:
    from huggingface_hub import try_to_load_from_cache

    if isinstance(try_to_load_from_cache(model_id, "config.json"), str):
        return None
    if fetch:
        try:
            from huggingface_hub import snapshot_download

            # What transformers reads; not the TensorFlow, Flax or ONNX copies beside it.
            snapshot_download(model_id, allow_patterns=["*.json", "*.txt", "*.model",
                                                        "*.safetensors", "pytorch_model*.bin"])
            return None
        except Exception as err:  # the hub client raises many types (offline, 404, auth)
            return f"{backbone} weights {model_id!r}: Hugging Face download failed ({err})"
    return (f"{backbone} weights {model_id!r}, which are not in the Hugging Face cache and "
            "cannot be downloaded here; download them by other means (or extract a store "
            "with a local model folder)")


def check_weights(backbones: Mapping[str, str], weights: Mapping[str, str]) -> None:
    """Resolve, fetch and check every backbone's weights before any worker starts.

    Args:
        backbones: store key -> backbone name, for the keys extracted.
        weights: store key -> weights argument (a key absent: the backbone's default).

    Raises:
        WeightsUnavailable: one line per missing or wrong checkpoint.
    """
    lines = []
    for key, name in backbones.items():
        problem = weights_problem(name, weights.get(key), fetch=True)
        if problem:
            lines.append(f"  {key}: {problem}")
    if lines:
        raise WeightsUnavailable(
            f"{len(lines)} backbone checkpoint(s) missing or wrong (checked before starting "
            f"any worker; weights folder {download.weights_dir()}):\n" + "\n".join(lines))


def check_extraction_weights(cfg: ExtractConfig) -> None:
    """:func:`check_weights` for the keys an extraction config extracts."""
    choices = cfg.choices
    check_weights({k: choices.backbones[k] for k in choices.modalities}, choices.weights)


@dataclass(frozen=True)
class WeightsRow:
    """One line of ``cli weights list``."""

    backbone: str
    key: str
    weights: str
    default: bool
    source: str
    url: str
    checksum: str
    size: str
    licence: str
    cached: str
    note: str = ""


def weights_rows() -> list[WeightsRow]:
    """Every registered backbone's published checkpoints (or how its weights are had)."""
    defaults = set(DEFAULT_BACKBONES.values())
    rows = []
    for name, backbone in REGISTRY.items():
        spec, is_default = backbone.spec, name in defaults
        for entry in backbone.downloads:
            found = download.locate(entry, full_check=False)
            cached = (f"yes ({found.path})" if found.problem is None else
                      f"BAD: {found.problem}" if found.path is not None else "no")
            rows.append(WeightsRow(name, spec.key, entry.identifier,
                                   is_default and entry.identifier == spec.default_weights,
                                   entry.source, entry.files[-1].url, entry.checksum_text(),
                                   entry.size_text(),
                                   entry.licence, cached, entry.note))
        if not backbone.downloads:
            how = ("Hugging Face hub, unpinned (the Hugging Face cache)"
                   if backbone.loads == "hf" else "no published checkpoint: --weights KEY=PATH")
            rows.append(WeightsRow(name, spec.key, spec.default_weights or "-", is_default,
                                   how, "", "", "", "", ""))
    return rows


def fetch_weights(names: Iterable[str] | None = None, *, to: str | Path | None = None,
                  every: bool = False) -> list[tuple[str, Path, bool]]:
    """Download and verify published checkpoints into ``to`` (default: the weights folder).

    Args:
        names: backbones whose default checkpoint to fetch (default: the default backbones').
        to: the folder; an offline cluster's nodes then use it with ``--weights-dir``.
        every: every published checkpoint of the registry.

    Returns:
        ``(identifier, path, fetched now)`` per checkpoint; a good copy already there is kept.

    Raises:
        WeightsError: a download failed or did not verify (checkpoints before it are kept).
        BackboneError: an unknown backbone name.
    """
    dest = Path(to).expanduser() if to is not None else download.weights_dir()
    done = []
    for entry in _entries(names, every):
        path = dest / entry.target
        if path.exists() and download.check_copy(entry, path, full_check=True) is None:
            done.append((entry.identifier, path, False))
            continue
        done.append((entry.identifier, download.fetch(entry, dest), True))
    return done


def _entries(names: Iterable[str] | None, every: bool) -> list[WeightsEntry]:
    if every:
        return [e for b in REGISTRY.values() for e in b.downloads]
    chosen = list(names) if names else list(DEFAULT_BACKBONES.values())
    entries = []
    for name in chosen:
        backbone = get_backbone(name)
        entry = backbone.download(backbone.spec.default_weights)
        if entry is None:
            raise WeightsError(f"backbone '{name}' has no published checkpoint to fetch "
                               "(see `cli weights list`)")
        entries.append(entry)
    return entries


__all__ = ["BACKBONES", "DEFAULT_BACKBONES", "REGISTRY", "Backbone", "BackboneError",
           "BackboneSpec", "WeightsRow", "WeightsUnavailable", "check_extraction_weights",
           "check_weights", "fetch_weights", "get_backbone", "get_spec", "load_encoder",
           "weights_problem", "weights_rows"]
