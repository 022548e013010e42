"""Published checkpoints: where each backbone's weights come from and how they are checked.

Plain data, no I/O: the backbone registry (:mod:`pipeline.backbones.registry`) attaches these
entries to its backbones, :mod:`pipeline.backbones.download` fetches and verifies them, and
``cli weights list`` prints them.

Checksums are the publishers' own, never made up here:

- ResDAVEnet-VQ's model ``{}`` (``RDVQ_00000``): the MD5 of the release archive printed in the
  official repository's README (wnhsu/ResDAVEnet-VQ);
- torchvision's weights: the first 8 hex digits of the file's sha256, which torchvision puts in
  its file names and ``torch.hub`` checks (a prefix: the full digest is not published);
- a checkpoint whose publisher gives no checksum is marked unverified (``check`` is ``None``);
  what was downloaded is still fingerprinted (sha256) into every store made with it.

Sizes are approximate, as published (torchvision's ``_file_size``); ``None`` when unknown.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

ChecksumKind = Literal["md5", "sha256", "sha256-prefix"]


@dataclass(frozen=True)
class Checksum:
    """A checksum the publisher gives for a downloaded file.

    Attributes:
        kind: ``md5``, ``sha256`` or ``sha256-prefix`` (the leading hex digits of the sha256).
        value: lowercase hex.
        published: where the value is published (for ``cli weights list``).
    """

    kind: ChecksumKind
    value: str
    published: str

    def describe(self) -> str:
        return f"{self.kind} {self.value}"


@dataclass(frozen=True)
class WeightsFile:
    """One file to download.

    Attributes:
        url: where the publisher serves it.
        name: file name in the weights folder (for an archive: the extracted member's name).
        check: the publisher's checksum of the download, or ``None`` (unverified).
        size_mb: approximate size of the download in MB, or ``None`` when unknown.
        member: for an archive (tar or zip), the path of the one member kept, matched at the
            end of the member's path (``models/best_audio_model.pth``); ``None`` for a plain
            file.
        alternatives: other file names tried in order, in the same folder of the same URL, when
            the server answers 404 for ``name`` (a Hugging Face repository holds either
            ``model.safetensors`` or ``pytorch_model.bin``).
    """

    url: str
    name: str
    check: Checksum | None = None
    size_mb: float | None = None
    member: str | None = None
    alternatives: tuple[str, ...] = ()


@dataclass(frozen=True)
class WeightsEntry:
    """A published checkpoint of one backbone, known by its weights identifier.

    Attributes:
        identifier: what ``--weights KEY=...`` and the store record (``IMAGENET1K_V2``).
        source: who publishes it, in words.
        licence: the licence the publisher states, in words.
        files: what to download; one state-dict file, or for a Hugging Face model the files of
            its ``save_pretrained`` folder.
        folder: the files form a folder (Hugging Face layout) rather than one state-dict file.
        revision: the pinned repository revision the URLs name (Hugging Face), or ``None``.
        note: anything a user must know (why a checksum is missing).
    """

    identifier: str
    source: str
    licence: str
    files: tuple[WeightsFile, ...]
    folder: bool = False
    revision: str | None = None
    note: str = ""

    @property
    def target(self) -> str:
        """The file (or folder) name in the weights folder."""
        if self.folder:
            revision = f"@{self.revision}" if self.revision else ""
            return f"{self.identifier.replace('/', '--')}{revision}"
        return self.files[0].name

    def checksum_text(self) -> str:
        """The checksums as ``cli weights list`` prints them."""
        checks = [f.check.describe() for f in self.files if f.check is not None]
        if len(checks) == len(self.files):
            return ", ".join(checks)
        pinned = f"; the files pinned by revision {self.revision}" if self.revision else ""
        return f"unverified (no published checksum{pinned})"

    def size_text(self) -> str:
        sizes = [f.size_mb for f in self.files]
        if any(s is None for s in sizes):
            return "unknown"
        return f"{sum(s for s in sizes if s is not None):.0f} MB"


_TORCHVISION = "torchvision (download.pytorch.org)"
_TORCHVISION_CHECK = "the file name (torchvision / torch.hub convention)"
_TORCHVISION_LICENCE = ("BSD-3-Clause (torchvision); the training data's terms may apply "
                        "(ImageNet, Kinetics)")


def _torchvision(identifier: str, file: str, prefix: str, size_mb: float) -> WeightsEntry:
    return WeightsEntry(
        identifier=identifier, source=_TORCHVISION, licence=_TORCHVISION_LICENCE,
        files=(WeightsFile(url=f"https://download.pytorch.org/models/{file}", name=file,
                           check=Checksum("sha256-prefix", prefix, _TORCHVISION_CHECK),
                           size_mb=size_mb),))


RESNET152_V1 = _torchvision("IMAGENET1K_V1", "resnet152-394f9c45.pth", "394f9c45", 230.434)
RESNET152_V2 = _torchvision("IMAGENET1K_V2", "resnet152-f82ba261.pth", "f82ba261", 230.474)
R3D_18_K400 = _torchvision("KINETICS400_V1", "r3d_18-b3b3357e.pth", "b3b3357e", 127.359)
R2PLUS1D_18_K400 = _torchvision("KINETICS400_V1", "r2plus1d_18-91a641e6.pth", "91a641e6",
                                120.318)

RESNET3D101_KINETICS = WeightsEntry(
    identifier="resnet3d101_kinetics-8d4c9d63",
    source="pretorched-x (alexandonian/pretorched-x), Hara et al.'s Kinetics-400 3D ResNet-101",
    licence="MIT (pretorched-x repository)",
    files=(WeightsFile(
        url="http://pretorched-x.csail.mit.edu/models/resnet3d101_kinetics-8d4c9d63.pth",
        name="resnet3d101_kinetics-8d4c9d63.pth"),),
    note=("pretorched-x publishes no checksum and does not check the hash-like part of the "
          "file name (8d4c9d63) when it loads, so it is not taken for one"))

#: ResDAVEnet-VQ's model ``{}`` (no quantised layer), R@10 0.735 in the official README.
#: Its Google Drive link is a page; this is the file's direct-download address.
RDVQ_00000 = WeightsEntry(
    identifier="RDVQ_00000",
    source="ResDAVEnet-VQ release (wnhsu/ResDAVEnet-VQ README, model '{}', Google Drive)",
    licence="BSD-3-Clause (ResDAVEnet-VQ repository)",
    files=(WeightsFile(
        url=("https://drive.usercontent.google.com/download?"
             "id=1J-tw3eg3R5e9k0vIfQaBVKiaHyOJUcIB&export=download&confirm=t"),
        name="RDVQ_00000-best_audio_model.pth",
        check=Checksum("md5", "e3f94990c72ce9742c252b2e04f134e4",
                       "the ResDAVEnet-VQ README (MD5 sum of the release archive)"),
        member="models/best_audio_model.pth"),),
    note="an archive of the training run; only models/best_audio_model.pth is kept")


def _hub_files(repo: str, revision: str, names: tuple[str, ...],
               weights: tuple[str, ...]) -> tuple[WeightsFile, ...]:
    base = f"https://huggingface.co/{repo}/resolve/{revision}"
    files = [WeightsFile(url=f"{base}/{name}", name=name) for name in names]
    files.append(WeightsFile(url=f"{base}/{weights[0]}", name=weights[0],
                             alternatives=weights[1:]))
    return tuple(files)


#: The revision ``transformers`` itself pins for this model (its sentiment pipeline's default).
DISTILBERT_SST2_REVISION = "714eb0f"
DISTILBERT_SST2 = WeightsEntry(
    identifier="distilbert-base-uncased-finetuned-sst-2-english",
    source="Hugging Face (distilbert/distilbert-base-uncased-finetuned-sst-2-english)",
    licence="Apache-2.0",
    files=_hub_files("distilbert/distilbert-base-uncased-finetuned-sst-2-english",
                     DISTILBERT_SST2_REVISION,
                     ("config.json", "tokenizer_config.json", "vocab.txt"),
                     ("model.safetensors", "pytorch_model.bin")),
    folder=True, revision=DISTILBERT_SST2_REVISION,
    note="the Hub publishes no checksum outside its API; the revision pins the files")

__all__ = ["Checksum", "RDVQ_00000", "WeightsEntry", "WeightsFile"]
