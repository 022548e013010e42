"""Resolving a backbone's ``weights`` argument, loading the state dict, fingerprinting it.

A weights argument is one of:

- ``None``: the backbone's default identifier (an error for backbones that have none, such as
  DAVEnet, whose checkpoints are not published); the registry turns a published checkpoint's
  identifier into a :class:`WeightsSource` of the file it fetched and verified
  (:mod:`pipeline.backbones.registry`) before the backbone's ``build`` sees it;
- ``"random"``: random initialisation, for tests and smoke runs (the features are meaningless);
- a named identifier the backbone knows (``"IMAGENET1K_V2"``; a Hugging Face id for text);
- a local path: a state-dict file (``.pt``, ``.pth``, ``.bin``, ``.safetensors``) or, for text,
  a folder written by ``save_pretrained``;
- an ``http(s)://`` URL of a state-dict file, downloaded once into the torch hub cache.

Whatever is loaded is fingerprinted with the sha256 of the file actually read, so a store's
provenance says exactly which weights made its features.

Start-up costs about one read of the weight files: backbones are built on the ``meta`` device
(shapes, no memory, no initialisation that the weights would overwrite), ``torch.save`` files are
memory-mapped rather than copied, the checkpoint's tensors become the parameters
(``load_state_dict(assign=True)``), and the sha256 pass, which reads the file into the page
cache the mapping then uses, runs in background threads (:func:`in_background`) while the next
backbones are built; an encoder's ``provenance()`` waits for its digest.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import mmap
import os
import re
import zipfile
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlparse

from pipeline.errors import UserError

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

RANDOM = "random"
WeightsKind = Literal["random", "url", "file", "folder", "hub"]
#: Keys a checkpoint may lack without harm: BatchNorm step counters (absent in checkpoints
#: written before PyTorch 0.4.1; unused in eval mode).
_OPTIONAL_KEY = re.compile(r"(^|\.)num_batches_tracked$")
_MAX_KEYS_SHOWN = 12
#: Threads hashing weights beside the builds (created on first use, again after a fork).
_HASHING: ThreadPoolExecutor | None = None


class WeightsError(UserError, ValueError):
    """A weights argument cannot be resolved, read, or does not fit the backbone."""


@dataclass(frozen=True)
class WeightsSource:
    """Where a backbone's weights come from.

    Attributes:
        identifier: what provenance records: the named identifier, the URL, the file or folder
            name (not its machine-specific directory; the sha256 pins the content), or
            ``"random"``.
        kind: ``random``, ``url``, ``file``, ``folder`` (Hugging Face folder) or ``hub``
            (Hugging Face id).
        location: the URL, absolute path or hub id to load; empty for ``random``.
        revision: the repository revision of a published Hugging Face folder, or ``None``.
    """

    identifier: str
    kind: WeightsKind
    location: str
    revision: str | None = None


def resolve_weights(weights: str | WeightsSource | None, *, backbone: str, key: str,
                    default: str | None,
                    named: Mapping[str, str] | None = None, allow_folder: bool = False,
                    allow_hub: bool = False, hint: str = "") -> WeightsSource:
    """Turn a ``weights`` argument into a :class:`WeightsSource`.

    Args:
        weights: the user's argument (see the module docstring), ``None`` for the default, or
            a source already resolved (a published checkpoint the registry fetched), returned
            as it is.
        backbone: registry name, for messages.
        key: store key of the modality (``audio``), for the ``--weights KEY=...`` hint.
        default: the backbone's default identifier, or ``None`` when there is none.
        named: identifiers the backbone knows, mapped to their download URLs.
        allow_folder: accept a local folder (Hugging Face ``save_pretrained`` layout).
        allow_hub: accept any other string as a Hugging Face id.
        hint: what the user should supply when there is no default (a checkpoint name).

    Raises:
        WeightsError: no default and none given, or an argument that is none of the above.
    """
    if isinstance(weights, WeightsSource):
        return weights
    if weights is None:
        if default is None:
            raise WeightsError(
                f"backbone '{backbone}' has no downloadable default weights{hint}; pass "
                f"--weights {key}=PATH (a local checkpoint file or an http(s) URL), or "
                f"--weights {key}=random for meaningless features in a smoke run")
        weights = default
    if weights == RANDOM:
        return WeightsSource(RANDOM, "random", "")
    if named and weights in named:
        return WeightsSource(weights, "url", named[weights])
    if weights.startswith(("http://", "https://")):
        # Query strings (signed-URL tokens) stay out of provenance; the sha256 pins the file.
        return WeightsSource(urlparse(weights)._replace(query="", fragment="").geturl(), "url",
                             weights)
    path = Path(weights).expanduser()
    if path.is_file():
        return WeightsSource(path.name, "file", str(path.resolve()))
    if path.is_dir():
        if not allow_folder:
            raise WeightsError(f"weights '{weights}' for backbone '{backbone}' is a folder; "
                               "expected a state-dict file (.pt, .pth, .bin, .safetensors)")
        return WeightsSource(path.resolve().name, "folder", str(path.resolve()))
    if allow_hub:
        return WeightsSource(weights, "hub", weights)
    known = ", ".join(sorted(named or {})) or "none"
    raise WeightsError(
        f"weights '{weights}' for backbone '{backbone}' is not a known identifier "
        f"(known: {known}), an existing file, an http(s) URL or '{RANDOM}'")


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file (checkpoints are hundreds of MB), hashed from its mapped pages."""
    with open(path, "rb") as f:
        if hasattr(os, "posix_fadvise"):
            # The kernel reads the whole file ahead: disk reads overlap the hashing.
            os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_WILLNEED)
        if os.fstat(f.fileno()).st_size == 0:
            return hashlib.sha256().hexdigest()
        # No copy into a buffer: the pages hashed are those the mapped tensors use.
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
            return hashlib.sha256(mapped).hexdigest()


def in_background(fn: Callable[..., str], *args: Any) -> Future[str]:
    """Run a digest function (``sha256_file``, ``state_sha256``) in a background thread.

    hashlib releases the GIL on large buffers, so the digests of a worker's backbones are
    computed on other cores while it builds the next ones; provenance waits for the result.
    """
    global _HASHING
    if _HASHING is None:
        _HASHING = ThreadPoolExecutor(max_workers=2, thread_name_prefix="weights-sha256")
    return _HASHING.submit(fn, *args)


def _forget_threads() -> None:
    global _HASHING
    _HASHING = None  # a forked child has none of its parent's threads


os.register_at_fork(after_in_child=_forget_threads)


def load_state_dict(source: WeightsSource, *, check_hash: bool = False,
                    ) -> tuple[dict[str, torch.Tensor], Future[str]]:
    """Read the state dict a ``url`` or ``file`` source points to.

    Checkpoints that wrap the state dict (``{"state_dict": ..., "epoch": ...}``, as 3D-ResNet
    training scripts save them) are unwrapped.

    Args:
        source: a resolved source of kind ``url`` or ``file``.
        check_hash: for URLs whose file name carries a sha256 prefix (``name-1a2b3c4d.pth``, the
            torchvision convention), verify it after download.

    Returns:
        The state dict (tensors on the CPU, mapped from the file where its format allows) and
        the sha256 of the file read, being computed in the background.

    Raises:
        WeightsError: the file cannot be read as a state dict.
    """
    if source.kind == "url":
        path = download(source.location, check_hash=check_hash)
    elif source.kind == "file":
        path = Path(source.location)
    else:
        raise WeightsError(f"weights of kind '{source.kind}' are not a state-dict file")
    digest = in_background(sha256_file, path)  # reads the pages the mapped tensors use
    return read_state_file(path), digest


def download(url: str, *, check_hash: bool = False) -> Path:
    """Download ``url`` into ``<torch hub dir>/checkpoints`` once; return the cached file."""
    import torch.hub

    name = Path(urlparse(url).path).name
    if not name:
        raise WeightsError(f"{url}: the URL names no file")
    cached = Path(torch.hub.get_dir()) / "checkpoints" / name
    if cached.is_file():
        return cached
    cached.parent.mkdir(parents=True, exist_ok=True)
    prefix = None
    if check_hash:
        match = torch.hub.HASH_REGEX.search(name)
        prefix = match.group(1) if match else None
    log.info("downloading %s to %s", url, cached)
    # download_url_to_file writes a temporary file and renames it: concurrent workers are safe.
    try:
        torch.hub.download_url_to_file(url, str(cached), hash_prefix=prefix, progress=False)
    except (OSError, RuntimeError) as err:  # URLError is an OSError; hash mismatch a RuntimeError
        raise WeightsError(f"{url}: download failed ({err}); download the file by other means "
                           "and pass its local path as the weights") from err
    return cached


def read_state_file(path: Path) -> dict[str, torch.Tensor]:
    """Load a state-dict file without executing pickled code (``weights_only``)."""
    import torch

    obj: Any
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            obj = load_file(str(path), device="cpu")
        else:
            # Mapped, not copied: the tensors use the file's pages in the page cache. Files in
            # the legacy (pre-1.6) format cannot be mapped and are read.
            obj = torch.load(path, map_location="cpu", weights_only=True,
                             mmap=zipfile.is_zipfile(path))
    except Exception as err:  # noqa: BLE001 - unpickling arbitrary bytes raises any type
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        if "Weights only load failed" in reason:  # torch's advice to unpickle is not ours
            reason = "not a torch.save file of tensors"
        raise WeightsError(f"{path}: cannot be read as a PyTorch state dict "
                           f"(a state dict saved with torch.save is expected): {reason}"
                           ) from None
    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not obj:
        raise WeightsError(f"{path}: expected a mapping of parameter names to tensors, "
                           f"got {type(obj).__name__}")
    tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if len(tensors) != len(obj):
        bad = sorted(k for k in obj if k not in tensors)
        raise WeightsError(f"{path}: entries that are not tensors: {_show(bad)}")
    return tensors


def fit_state_dict(model: torch.nn.Module, state: Mapping[str, torch.Tensor], *, source: str,
                   backbone: str, ignore_prefixes: tuple[str, ...] = ()) -> None:
    """Load ``state`` into ``model``, requiring every parameter and buffer to be present.

    A ``module.`` prefix (checkpoints saved from ``nn.DataParallel``) is removed. Keys under
    ``ignore_prefixes`` are dropped on purpose (classifier layers the frozen feature extractor
    does not have). Any missing key, unexpected key or shape mismatch is an error.

    Args:
        model: the module to fill.
        state: the checkpoint's state dict.
        source: the file or URL the state came from, named in errors.
        backbone: registry name, named in errors.
        ignore_prefixes: key prefixes dropped before matching (``("fc.",)``).

    Raises:
        WeightsError: the checkpoint does not fit, naming the file and the offending keys.
    """
    renamed = {k.removeprefix("module."): v for k, v in state.items()}
    kept = {k: v for k, v in renamed.items() if not k.startswith(ignore_prefixes)}
    if ignore_prefixes and len(kept) < len(renamed):
        log.debug("%s: ignoring %d classifier keys", source, len(renamed) - len(kept))
    expected = model.state_dict()
    missing = sorted(k for k in expected.keys() - kept.keys() if not _OPTIONAL_KEY.search(k))
    unexpected = sorted(kept.keys() - expected.keys())
    mismatched = sorted(f"{k} {tuple(kept[k].shape)} != {tuple(expected[k].shape)}"
                        for k in expected.keys() & kept.keys()
                        if kept[k].shape != expected[k].shape)
    problems = [f"{label}: {_show(keys)}" for label, keys in
                (("missing keys", missing), ("unexpected keys", unexpected),
                 ("shape mismatches (checkpoint != model)", mismatched)) if keys]
    if problems:
        raise WeightsError(f"{source}: checkpoint does not fit backbone '{backbone}': "
                           + "; ".join(problems))
    kept = {k: v.to(expected[k].dtype).contiguous() for k, v in kept.items()}
    # A plain dict carries no version metadata, so BatchNorm fills an absent num_batches_tracked.
    model.load_state_dict(kept, strict=True, assign=True)
    check_materialised(model, backbone)


def check_materialised(model: torch.nn.Module, backbone: str) -> None:
    """Raise if a parameter or buffer of ``model`` is still on the ``meta`` device (no data)."""
    empty = [name for name, t in (*model.named_parameters(), *model.named_buffers()) if t.is_meta]
    if empty:
        raise RuntimeError(f"backbone '{backbone}': no values for {_show(empty)}")


def folder_weights_sha256(folder: Path) -> str:
    """sha256 of the weight file(s) a Hugging Face folder holds (safetensors preferred).

    Sharded checkpoints hash the shards' names and digests in order, so the result still pins
    the exact weights.
    """
    for single in ("model.safetensors", "pytorch_model.bin"):
        if (folder / single).is_file():
            return sha256_file(folder / single)
    shards = (sorted(folder.glob("model-*.safetensors"))
              or sorted(folder.glob("pytorch_model-*.bin")))
    if not shards:
        raise WeightsError(f"{folder}: no model.safetensors or pytorch_model.bin found")
    digest = hashlib.sha256()
    for shard in shards:
        digest.update(f"{shard.name}:{sha256_file(shard)}\n".encode())
    return digest.hexdigest()


def warn_random(backbone: str) -> None:
    """Say loudly that a backbone runs with random weights."""
    log.warning("RANDOM WEIGHTS: features are meaningless; backbone '%s' is randomly "
                "initialised (use only for tests and smoke runs)", backbone)


@contextlib.contextmanager
def skeleton() -> Iterator[None]:
    """Build modules on the ``meta`` device: shapes and dtypes, no memory, no initialisation.

    Loaded weights (or a random scheme, after ``to_empty``) then set every tensor. The
    initialisers' in-place draws and fills are skipped, not run on meta tensors, where they
    have nothing to set and their argument checks alone cost more than the rest of the build.
    """
    import torch
    from torch.overrides import TorchFunctionMode

    skipped = {torch.Tensor.normal_, torch.Tensor.uniform_, torch.Tensor.fill_,
               torch.Tensor.zero_}

    class SkipInit(TorchFunctionMode):
        def __torch_function__(self, func: Any, types: Any, args: tuple[Any, ...] = (),
                               kwargs: dict[str, Any] | None = None) -> Any:
            if func in skipped and args[0].is_meta:
                return args[0]
            return func(*args, **(kwargs or {}))

    with torch.device("meta"), SkipInit():
        yield


@contextlib.contextmanager
def seeded_init(seed: int = 0) -> Iterator[None]:
    """Make random initialisation reproducible without touching the caller's RNG state."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def _show(keys: list[str]) -> str:
    more = len(keys) - _MAX_KEYS_SHOWN
    return ", ".join(keys[:_MAX_KEYS_SHOWN]) + (f" (+{more} more)" if more > 0 else "")
