"""Published checkpoints: fetching from a loopback HTTP server, verification, the release
archive of ResDAVEnet-VQ, the weights folder, and the check before any worker starts.

The server (127.0.0.1) stands in for the publishers: the catalogue's URLs are rebased onto it
with ``CONCLUGEN_WEIGHTS_MIRROR``. It serves a good checkpoint, one whose checksum differs from
the published one, one cut short (the full ``Content-Length`` announced, half the body sent),
an HTML page, and 404 for anything else.
"""

from __future__ import annotations

import dataclasses
import hashlib
import http.server
import io
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.backbones import catalogue, download, load_encoder
from pipeline.backbones.catalogue import Checksum, WeightsEntry, WeightsFile
from pipeline.backbones.registry import (
    REGISTRY, WeightsUnavailable, check_weights, fetch_weights, weights_problem)
from pipeline.backbones.weights import WeightsError


class Site:
    """Files served by path (query included), each in a mode: ok, truncated or html."""

    def __init__(self) -> None:
        self.files: dict[str, tuple[bytes, str]] = {}
        self.requests: list[str] = []
        self.base = ""

    def url(self, path: str) -> str:
        """The publisher's URL whose mirrored form is served at ``path``."""
        return f"https://publisher.example{path}"

    def put(self, path: str, body: bytes, mode: str = "ok") -> str:
        self.files[f"/publisher.example{path}"] = (body, mode)
        return self.url(path)


@pytest.fixture
def site(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Site]:
    served = Site()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the standard library's name
            served.requests.append(self.path)
            if self.path not in served.files:
                self.send_error(404)
                return
            body, mode = served.files[self.path]
            self.send_response(200)
            self.send_header("Content-Type", "text/html" if mode == "html" else
                             "application/octet-stream")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[:len(body) // 2] if mode == "truncated" else body)
            if mode == "truncated":
                self.close_connection = True

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    served.base = f"http://127.0.0.1:{server.server_address[1]}"
    monkeypatch.setenv(download.MIRROR_ENV, served.base)
    monkeypatch.setenv(download.DIR_ENV, str(tmp_path / "weights"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # no torchvision cache either
    yield served
    server.shutdown()
    server.server_close()


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _entry(url: str, name: str, check: Checksum | None, member: str | None = None,
           ) -> WeightsEntry:
    return WeightsEntry(identifier="TEST", source="test", licence="test",
                        files=(WeightsFile(url=url, name=name, check=check, member=member),))


def _published(kind: str, value: str) -> Checksum:
    return Checksum(kind, value, "this test")  # type: ignore[arg-type]


CKPT = b"a checkpoint's bytes " * 5000


# --------------------------------------------------------------------- one file


@pytest.mark.parametrize("kind", ["sha256", "sha256-prefix", "md5"])
def test_a_good_checkpoint_is_fetched_verified_and_recorded(site: Site, tmp_path: Path,
                                                            kind: str) -> None:
    url = site.put("/models/good.pth", CKPT)
    value = {"sha256": _sha(CKPT), "sha256-prefix": _sha(CKPT)[:8],
             "md5": hashlib.md5(CKPT).hexdigest()}[kind]
    entry = _entry(url, "good.pth", _published(kind, value))
    path = download.ensure(entry, download=True)
    assert path == tmp_path / "weights" / "good.pth" and path.read_bytes() == CKPT
    assert site.requests == ["/publisher.example/models/good.pth"]
    assert download.locate(entry) == download.Found(path, None)
    download.ensure(entry, download=True)  # found and checked: no second download
    assert len(site.requests) == 1


def test_a_checkpoint_with_another_checksum_is_refused_and_not_kept(site: Site,
                                                                    tmp_path: Path) -> None:
    url = site.put("/models/other.pth", CKPT)
    entry = _entry(url, "other.pth", _published("sha256", _sha(b"the published file")))
    with pytest.raises(WeightsError, match=r"sha256 [0-9a-f]{64} does not match the published"):
        download.ensure(entry, download=True)
    assert not (tmp_path / "weights" / "other.pth").exists()
    assert list((tmp_path / "weights").iterdir()) == []  # no temporary file left either


def test_a_truncated_download_is_refused(site: Site, tmp_path: Path) -> None:
    url = site.put("/models/cut.pth", CKPT, mode="truncated")
    entry = _entry(url, "cut.pth", None)  # unverified: only the length can tell
    with pytest.raises(WeightsError, match=f"truncated download.*{len(CKPT)}"):
        download.ensure(entry, download=True)
    assert not (tmp_path / "weights" / "cut.pth").exists()


def test_a_missing_file_names_the_url_and_an_html_page_is_refused(site: Site) -> None:
    with pytest.raises(WeightsError, match=r"/publisher.example/models/absent.pth: HTTP 404"):
        download.ensure(_entry(site.url("/models/absent.pth"), "absent.pth", None),
                        download=True)
    url = site.put("/download?id=1", b"<!DOCTYPE html><html>quota exceeded</html>", "html")
    with pytest.raises(WeightsError, match="HTML page instead of the file"):
        download.ensure(_entry(url, "page.pth", None), download=True)


def test_a_copy_changed_after_fetching_is_caught(site: Site) -> None:
    url = site.put("/models/unverified.pth", CKPT)
    entry = _entry(url, "unverified.pth", None)
    path = download.ensure(entry, download=True)
    path.write_bytes(CKPT[:-1] + b"!")  # same size, other content
    assert "changed since it was fetched" in str(download.locate(entry).problem)
    assert download.locate(entry, full_check=False).problem is None  # workers: sizes only
    path.write_bytes(CKPT[:100])
    assert "has 100 bytes" in str(download.locate(entry, full_check=False).problem)


def test_fetch_to_a_folder_then_use_it_as_the_weights_folder(
        site: Site, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = site.put("/models/r3d.pth", CKPT)
    entry = dataclasses.replace(catalogue.R3D_18_K400, files=(dataclasses.replace(
        catalogue.R3D_18_K400.files[0], url=url,
        check=_published("sha256-prefix", _sha(CKPT)[:8])),))
    monkeypatch.setitem(REGISTRY, "r3d_18",
                        dataclasses.replace(REGISTRY["r3d_18"], downloads=(entry,)))
    offline = tmp_path / "for-the-nodes"
    [(identifier, path, fetched)] = fetch_weights(["r3d_18"], to=offline)
    assert (identifier, path, fetched) == ("KINETICS400_V1", offline / "r3d_18-b3b3357e.pth", True)
    assert fetch_weights(["r3d_18"], to=offline)[0][2] is False  # verified copy kept
    assert "needs a download" in str(weights_problem("r3d_18", None))
    download.use_weights_dir(offline)
    assert weights_problem("r3d_18", None) is None
    with pytest.raises(WeightsError, match="no such folder"):
        download.use_weights_dir(tmp_path / "absent")


# --------------------------------------------------------------------- ResDAVEnet-VQ release


def _rdvq_archive(state: dict[str, torch.Tensor]) -> bytes:
    """The layout of the ResDAVEnet-VQ release: the training run's folder, packed."""
    members = {"RDVQ_00000/args.pkl": b"(an argparse namespace, never read)",
               "RDVQ_00000/models/best_image_model.pth": b"image model",
               "RDVQ_00000/models/audio_model.e100.pth": b"a later epoch"}
    buf = io.BytesIO()
    # The release predates PyTorch 1.6: its files are in the legacy (non-zip) format.
    torch.save(state, buf, _use_new_zipfile_serialization=False)
    members["RDVQ_00000/models/best_audio_model.pth"] = buf.getvalue()
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:  # gzip would only slow the test
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def _serve_rdvq(site: Site, monkeypatch: pytest.MonkeyPatch, archive: bytes,
                md5: str) -> bytes:
    """Serve ``archive`` at RDVQ_00000's published URL, published with checksum ``md5``."""
    from urllib.parse import urlparse

    published = catalogue.RDVQ_00000.files[0]
    parts = urlparse(published.url)
    site.files[f"/{parts.netloc}{parts.path}?{parts.query}"] = (archive, "ok")
    entry = dataclasses.replace(catalogue.RDVQ_00000, files=(dataclasses.replace(
        published, check=_published("md5", md5)),))
    monkeypatch.setitem(REGISTRY, "resdavenet",
                        dataclasses.replace(REGISTRY["resdavenet"], downloads=(entry,)))
    return archive


def _rdvq_state() -> dict[str, torch.Tensor]:
    from tests.pipeline.test_backbones_weights import _random_state, _resdavenet_shapes

    # Saved from nn.DataParallel, as the release's training script does.
    return {f"module.{k}": v for k, v in _random_state(_resdavenet_shapes(), seed=3).items()}


def test_the_default_audio_backbone_loads_the_release_archive(
        site: Site, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    state = _rdvq_state()
    archive = _rdvq_archive(state)
    _serve_rdvq(site, monkeypatch, archive, hashlib.md5(archive).hexdigest())
    encoder = load_encoder("resdavenet")  # the default weights: RDVQ_00000, fetched
    kept = tmp_path / "weights" / "RDVQ_00000-best_audio_model.pth"
    assert sorted(p.name for p in kept.parent.iterdir()) == [kept.name, kept.name + ".json"]
    model = encoder.model  # type: ignore[attr-defined]
    assert torch.equal(model.layer4[1].conv2.weight, state["module.layer4.1.conv2.weight"])
    assert torch.equal(model.bn1.running_var, state["module.bn1.running_var"])
    prov = encoder.provenance()
    assert prov["weights"] == "RDVQ_00000"
    assert prov["weights_sha256"] == _sha(kept.read_bytes())
    wave = (0.1 * np.sin(np.linspace(0, 3000, 12000))).astype(np.float32)
    assert encoder.encode(wave).shape == (1024,)
    assert weights_problem("resdavenet", None, fetch=True) is None


def test_a_release_archive_with_another_md5_is_refused(
        site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    _serve_rdvq(site, monkeypatch, b"not the release", "e3f94990c72ce9742c252b2e04f134e4")
    with pytest.raises(WeightsError, match=r"md5 [0-9a-f]{32} does not match the published "
                                           r"e3f94990c72ce9742c252b2e04f134e4"):
        load_encoder("resdavenet")


def test_the_catalogue_pins_the_published_checksums() -> None:
    rdvq = catalogue.RDVQ_00000.files[0]
    assert (rdvq.check is not None and rdvq.check.kind == "md5"
            and rdvq.check.value == "e3f94990c72ce9742c252b2e04f134e4")
    assert rdvq.member == "models/best_audio_model.pth"
    from torchvision.models import get_model_weights

    for name in ("resnet152", "r3d_18", "r2plus1d_18"):
        for entry in REGISTRY[name].downloads:
            member = get_model_weights(name)[entry.identifier]
            [file] = entry.files
            assert file.url == member.url and file.check is not None
            assert f"-{file.check.value}." in member.url  # torch.hub's sha256-prefix rule
    assert REGISTRY["distilbert-sst2"].spec.revision == "714eb0f"  # type: ignore[union-attr]
    assert all("/resolve/714eb0f/" in f.url for f in catalogue.DISTILBERT_SST2.files)


# --------------------------------------------------------------------- before any worker


def test_every_bad_checkpoint_is_one_line_before_any_worker(
        site: Site, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import pipeline.run
    import pipeline.shard_tasks
    from pipeline.extract_config import load_extract_config
    from pipeline.run import run_extract

    def no_cluster(*args: object) -> None:
        raise AssertionError("a cluster was started")

    monkeypatch.setattr(pipeline.shard_tasks, "make_client", no_cluster)
    # The torchvision file is in the folder but damaged; nothing else is served (404).
    bad = tmp_path / "weights" / "resnet152-f82ba261.pth"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"damaged")
    cfg = load_extract_config(backbones={"audio": "davenet"},
                              weights={"text": str(tmp_path / "gone")})
    out = tmp_path / "store"
    with pytest.raises(WeightsUnavailable) as err:
        run_extract("meld", tmp_path / "raw-not-needed", str(out), cfg=cfg, device="cpu")
    lines = str(err.value).splitlines()
    assert lines[0].startswith("4 backbone checkpoint(s) missing or wrong (checked before "
                               "starting any worker")
    assert lines[1].startswith("  frames_2d: resnet152 weights 'IMAGENET1K_V2': ")
    assert "does not match the published f82ba261" in lines[1]
    assert lines[2].startswith("  frames_3d: resnet3d101 weights")
    assert "resnet3d101_kinetics-8d4c9d63.pth: HTTP 404" in lines[2]
    assert lines[3].startswith("  audio: davenet, which has no published checkpoint")
    assert "--weights audio=PATH" in lines[3]
    assert lines[4] == (f"  text: distilbert-sst2 weights {str(tmp_path / 'gone')!r}, a file "
                        "or folder that does not exist (published checkpoints of "
                        "distilbert-sst2: distilbert-base-uncased-finetuned-sst-2-english)")
    assert len(lines) == 5 and not out.exists()  # nothing written, no lock taken


def test_random_and_local_weights_pass_the_check(tmp_path: Path) -> None:
    import torch

    local = tmp_path / "audio_model.pth"
    torch.save({"conv.weight": torch.zeros(2)}, local)
    check_weights({"frames_2d": "resnet152", "audio": "davenet"},
                  {"frames_2d": "random", "audio": str(local)})
    local.write_bytes(b"x")  # a local file the client cannot read as a state dict
    with pytest.raises(WeightsUnavailable, match="cannot be read as a PyTorch state dict"):
        check_weights({"audio": "davenet"}, {"audio": str(local)})


def test_a_hub_folder_takes_the_weight_file_the_revision_has(site: Site, tmp_path: Path) -> None:
    base = "/org/model/resolve/abc1234"
    site.put(f"{base}/config.json", b"{}")
    site.put(f"{base}/pytorch_model.bin", CKPT)  # no model.safetensors at this revision
    entry = WeightsEntry(
        identifier="org/model", source="test", licence="test", folder=True, revision="abc1234",
        files=(WeightsFile(url=site.url(f"{base}/config.json"), name="config.json"),
               WeightsFile(url=site.url(f"{base}/model.safetensors"), name="model.safetensors",
                           alternatives=("pytorch_model.bin",))))
    folder = download.ensure(entry, download=True)
    assert folder == tmp_path / "weights" / "org--model@abc1234"
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "pytorch_model.bin"]
    assert download.locate(entry).problem is None
    (folder / "config.json").unlink()
    assert "config.json is missing" in str(download.locate(entry).problem)
    assert "unverified (no published checksum; the files pinned by revision abc1234)" == \
        entry.checksum_text()
