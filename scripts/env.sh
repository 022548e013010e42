#!/usr/bin/env bash
# Create or reuse the project's environment: system packages, uv, .venv with the locked
# dependencies, and the project installed in editable mode. Safe to run again: it only does
# what is missing. Source it (". scripts/env.sh") or run it; afterwards .venv/bin has `cli` and
# `conclugen` (the same command).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

need_apt=()
command -v espeak-ng >/dev/null 2>&1 || need_apt+=(espeak-ng)
if ((${#need_apt[@]})); then
  if command -v apt-get >/dev/null 2>&1; then
    sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
    echo "[env] installing system packages: ${need_apt[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
  else
    echo "[env] warning: ${need_apt[*]} missing and no apt-get; the sample dataset falls back to synthetic audio" >&2
  fi
fi

python="${PYTHON:-python3}"
if ! command -v uv >/dev/null 2>&1 && [ ! -x "$root/.venv-tools/bin/uv" ]; then
  echo "[env] installing uv"
  "$python" -m venv "$root/.venv-tools"
  "$root/.venv-tools/bin/pip" install -q uv
fi
uv="$(command -v uv || echo "$root/.venv-tools/bin/uv")"

[ -x .venv/bin/python ] || "$uv" venv -q --python "$python" .venv
stamp=".venv/.lock-sha256"
want="$(cat requirements.lock setup.cfg pyproject.toml | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "[env] installing locked dependencies into .venv (first run downloads about 4 GB)"
  # --no-deps on the lock: every package is already pinned there, and the lock also holds the
  # packages whose metadata no resolver could satisfy (requirements-nodeps.in: facenet-pytorch,
  # whose stale torch<2.3 and numpy<2 pins were overridden when the lock was resolved).
  # --compile-bytecode: every process (each Dask worker) imports torch, torchvision and
  # transformers from cached bytecode instead of compiling their sources (BENCHMARKS.md:
  # 3.6 s of imports instead of 9 s where bytecode is not written at run time).
  VIRTUAL_ENV="$root/.venv" "$uv" pip install -q --no-deps --compile-bytecode -r requirements.lock
  VIRTUAL_ENV="$root/.venv" "$uv" pip install -q --no-deps -e .
  echo "$want" > "$stamp"
fi
