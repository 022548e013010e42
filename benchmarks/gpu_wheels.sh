#!/usr/bin/env bash
# Gather the wheels benchmarks/gpu_suite.sh installs on a GPU machine that has no internet.
#
#   bash benchmarks/gpu_wheels.sh [--python-versions "3.11 3.12"] [--dest DIR] [--print]
#
# Run it where pip can reach the package index. The GPU machine has torch, transformers, h5py,
# pyarrow and typer (and what they pull in) but not Dask (dask, distributed), PyAV (av),
# facenet-pytorch, nor pytest for the tests marked gpu; this downloads those and the
# dependencies they add, pinned as in requirements.lock, as binary wheels for Linux x86-64 and the
# given Pythons (default 3.11 and 3.12; PyAV's wheel, most of the 45 MB, serves both), without
# resolving anything else. The destination (default build/gpu-wheels/) is ignored by git: carry
# it to the GPU machine with the run, which takes 64 MiB at most.
# --print lists the pinned requirements and downloads nothing.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest="$root/build/gpu-wheels"
python_versions="3.11 3.12"
print=0
while [ $# -gt 0 ]; do
  case "$1" in
    --python-versions) python_versions="$2"; shift ;;
    --dest) dest="$2"; shift ;;
    --print) print=1 ;;
    *) echo "usage: bash benchmarks/gpu_wheels.sh [--python-versions 'X.Y ...'] [--dest DIR]" \
            "[--print]" >&2
       exit 2 ;;
  esac
  shift
done

# What the suite and the extraction hooks need beyond the GPU machine's packages: the
# distributions themselves, then what they depend on (the small ones that a torch + transformers
# install usually has too, in case it does not).
packages=(
  dask distributed av facenet-pytorch
  cloudpickle locket msgpack partd sortedcontainers tblib toolz tornado zict
  importlib-metadata zipp lazy-importer psutil
  click fsspec packaging pyyaml jinja2 markupsafe urllib3
  pytest pluggy iniconfig pygments pytest-timeout
)
pins=()
for name in "${packages[@]}"; do
  pin="$(grep -i "^${name}==" "$root/requirements.lock" || true)"
  if [ -z "$pin" ]; then
    echo "$name is not pinned in requirements.lock" >&2
    exit 1
  fi
  pins+=("$pin")
done
if [ "$print" -eq 1 ]; then
  printf '%s\n' "${pins[@]}"
  exit 0
fi
mkdir -p "$dest"
for version in $python_versions; do
  python3 -m pip download --quiet --no-deps --only-binary=:all: --dest "$dest" \
    --python-version "$version" --implementation cp --platform manylinux_2_28_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 "${pins[@]}"
done
du -sh "$dest"
ls "$dest"
