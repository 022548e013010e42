"""The package installs like any other: its requirements resolve, and the built wheel works on
its own, manifests included, from any folder."""

from __future__ import annotations

import configparser
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
DATASETS = ("meld", "caer", "mosei", "voxceleb2")


def _install_requires() -> list[Requirement]:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    lines = cfg["options"]["install_requires"].split("\n")
    return [Requirement(line.strip()) for line in lines if line.strip()]


def _lock() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if m := re.match(r"^([A-Za-z0-9_.\-]+)(\[[^\]]*\])?==([^\s;]+)", line):
            pins[canonicalize_name(m.group(1))] = m.group(3)
    return pins


def _applies(req: Requirement, extras: set[str]) -> bool:
    if req.marker is None:
        return True
    return any(req.marker.evaluate({"extra": extra}) for extra in extras | {""})


def test_facenet_pytorch_is_not_a_declared_dependency() -> None:
    # Its metadata demands torch<2.3: declared, it would make `pip install .` unresolvable.
    names = {canonicalize_name(req.name) for req in _install_requires()}
    assert "facenet-pytorch" not in names
    assert {"requests", "tqdm"} <= names, "facenet-pytorch's runtime dependencies stay declared"


def test_the_lock_is_a_solution_of_install_requires() -> None:
    """Every declared requirement, and every requirement of those (from the installed metadata),
    is met by the locked version: plain pip can resolve `pip install .` (the lock is a witness)."""
    import importlib.metadata as md

    pins = _lock()
    problems = []
    todo = [(req, "conclugen") for req in _install_requires()]
    seen: set[tuple[str, frozenset[str]]] = set()
    while todo:
        req, parent = todo.pop()
        name = canonicalize_name(req.name)
        if name not in pins:
            problems.append(f"{name} (required by {parent}) is not in requirements.lock")
            continue
        if not req.specifier.contains(pins[name], prereleases=True):
            problems.append(f"{parent} requires {req}, the lock has {name}=={pins[name]}")
        key = (name, frozenset(req.extras))
        if key in seen:
            continue
        seen.add(key)
        try:
            dist = md.distribution(name)
        except md.PackageNotFoundError:
            problems.append(f"{name} is locked but not installed here (run scripts/env.sh)")
            continue
        for line in dist.requires or []:
            sub = Requirement(line)
            if _applies(sub, set(req.extras)):
                todo.append((sub, f"{name}=={dist.version}"))
    assert not problems, "\n".join(sorted(set(problems)))
    assert "facenet-pytorch" not in {name for name, _ in seen}


# --- the built wheel, installed into a fresh environment -----------------------------------

_SOURCES = ("setup.cfg", "pyproject.toml", "README.md", "cli.py", "pipeline", "heads",
            "manifests")


def _uv() -> str | None:
    return shutil.which("uv") or shutil.which("uv", path=str(ROOT / ".venv-tools" / "bin"))


def _run(cmd: list[str], cwd: Path | None = None,
         env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=cwd, env=env)
    assert result.returncode == 0, f"{' '.join(map(str, cmd))}:\n{result.stdout}{result.stderr}"
    return result


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel, built offline from a clean copy of the sources (no stale build/ folder)."""
    uv = _uv()
    if uv is None:
        pytest.skip("uv not found (scripts/env.sh installs it)")
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    src.mkdir()
    for name in _SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(ROOT / name, src / name)
    # --no-build-isolation: setuptools comes from this environment (it is in the lock).
    _run([uv, "build", "--wheel", "--no-build-isolation", "--python", sys.executable,
          "--out-dir", str(tmp / "dist"), str(src)])
    (built,) = (tmp / "dist").glob("conclugen-*.whl")
    return built


@pytest.mark.slow
def test_wheel_holds_the_packages_and_every_manifest(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    yamls = sorted(p.name for p in (ROOT / "manifests").glob("*.yaml"))
    assert yamls, "no manifests in the source tree"
    for yaml_name in yamls:
        assert f"manifests/{yaml_name}" in names, f"{yaml_name} missing from {wheel.name}"
    for module in ("manifests/__init__.py", "cli.py", "pipeline/__init__.py",
                   "heads/__init__.py"):
        assert module in names
    assert not any(n.startswith("tests/") for n in names)
    metadata = next(n for n in names if n.endswith(".dist-info/METADATA"))
    requires = [line for line in zipfile.ZipFile(wheel).read(metadata).decode().splitlines()
                if line.startswith("Requires-Dist:")]
    assert not any("facenet" in line for line in requires)
    assert any("tensorboard" in line for line in requires)


@pytest.mark.slow
def test_installed_wheel_works_outside_the_source_tree(wheel: Path, tmp_path: Path) -> None:
    uv = _uv()
    assert uv is not None
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    python = venv / "bin" / "python"
    # The fresh environment sees this one's packages (nothing to download) through a .pth
    # file, which adds the folder to sys.path but does not run the .pth files inside it: this
    # environment's editable install of the project stays invisible.
    site = _run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"])
    Path(site.stdout.strip(), "deps.pth").write_text(sysconfig.get_path("purelib") + "\n")
    _run([uv, "pip", "install", "--offline", "--no-deps", "--python", str(python), str(wheel)])

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["COLUMNS"] = "200"
    check = """
import importlib.metadata as md, sys
from packaging.requirements import Requirement
import cli, heads, manifests, pipeline
from pipeline.manifest import load_manifest
for mod in (cli, heads, manifests, pipeline):
    assert mod.__file__.startswith(sys.prefix), f"{mod.__name__} from {mod.__file__}"
assert manifests.path("pretrain.yaml").is_file() and manifests.path("evaluate.yaml").is_file()
assert str(manifests.path("meld")).startswith(sys.prefix)
assert load_manifest("meld").labels[0] == "neutral"
from heads.config import DEFAULT_CONFIG, resolve_config
from heads.eval_config import EVAL_CONFIG, resolve_eval_config
assert str(DEFAULT_CONFIG).startswith(sys.prefix) and str(EVAL_CONFIG).startswith(sys.prefix)
assert resolve_config("conclugen", preset="cpu").model.representation_dim == 64
resolve_eval_config("meld")
unmet = []
for line in md.requires("conclugen"):
    req = Requirement(line)
    if req.marker is not None and not req.marker.evaluate({"extra": ""}):
        continue
    try:
        if not req.specifier.contains(md.version(req.name), prereleases=True):
            unmet.append(f"{req} (installed {md.version(req.name)})")
    except md.PackageNotFoundError:
        unmet.append(f"{req} (missing)")
assert not unmet, unmet
print("ok")
"""
    result = _run([str(python), "-c", check], cwd=elsewhere, env=env)
    assert result.stdout.strip() == "ok"
    listing = _run([str(venv / "bin" / "cli"), "datasets"], cwd=elsewhere, env=env).stdout
    for name in DATASETS:
        assert name in listing, listing
    # `conclugen` is the same app; outside a checkout its version names no git commit.
    version = _run([str(venv / "bin" / "conclugen"), "--version"], cwd=elsewhere, env=env)
    assert re.fullmatch(r"conclugen \d+\.\d+\.\S+, torch \S+", version.stdout.strip()), \
        version.stdout
