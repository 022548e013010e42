# The image a cluster runs: `docker run --gpus all IMAGE extract --dataset meld --root /data ...`
# Same locked dependencies as CI (requirements.lock); torch's CUDA libraries come with its wheels,
# the base image supplies the CUDA runtime and cuDNN user-space for the driver.
FROM nvidia/cuda:12.8.1-cudnn-runtime-ubuntu22.04

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONUNBUFFERED=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3.11 python3.11-venv espeak-ng ca-certificates \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/conclugen
COPY requirements.lock setup.cfg pyproject.toml ./
# --no-deps: the lock pins every package, facenet-pytorch included (requirements-nodeps.in: not a
# declared dependency, its stale torch<2.3 pins were overridden at lock time). --compile-bytecode:
# workers import from cached bytecode (BENCHMARKS.md, worker start-up).
RUN python3.11 -m venv /opt/venv \
 && pip install --no-cache-dir uv==0.13.9 \
 && uv pip install --no-cache --no-deps --compile-bytecode -r requirements.lock

# A regular (not editable) install, as from the wheel: `cli datasets` reads the manifests from
# the installed package, not from this source folder.
COPY . .
RUN uv pip install --no-cache --no-deps . \
 && cli datasets > /dev/null

ENTRYPOINT ["cli"]
CMD ["--help"]
