"""Command-line option values parsed and checked, each error naming its flag."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from pipeline.errors import UserError

if TYPE_CHECKING:
    from pipeline.cluster import ClusterOptions


class OptionError(UserError, ValueError):
    """A command-line option with a value the command cannot use."""


def parse_weights(values: list[str], modalities: list[str] | None) -> dict[str, str]:
    """``random`` (every modality) or ``KEY=VALUE`` pairs -> {key: weights}."""
    from pipeline.extract_config import MODALITIES  # here: the command line starts quickly

    out: dict[str, str] = {}
    for value in values:
        if "=" in value:
            key, weights = value.split("=", 1)
            if key not in MODALITIES:
                raise OptionError(f"--weights {value}: unknown modality {key!r}; "
                                  f"valid: {list(MODALITIES)}")
            out[key] = weights
        else:
            out.update({m: value for m in (modalities or MODALITIES)})
    return out


def parse_pairs(values: list[str], option: str,
                keys: tuple[str, ...] | None = None) -> dict[str, str]:
    """``KEY=VALUE`` values of ``option`` -> {key: value}; ``keys``: the valid keys."""
    out = {}
    for value in values:
        if "=" not in value:
            raise OptionError(f"{option} {value}: expected KEY=VALUE")
        key, val = value.split("=", 1)
        if keys is not None and key not in keys:
            raise OptionError(f"{option} {value}: unknown key {key!r}; valid: {list(keys)}")
        out[key] = val
    return out


_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def parse_sets(values: list[str]) -> dict[str, object]:
    """``--set key.sub=value`` pairs; values are parsed as YAML scalars (numbers, bools, lists).

    A number in exponent notation without a dot (``1e-4``) is a string to YAML 1.1's
    resolver: it is read as the number it is."""
    import yaml

    def scalar(text: str) -> object:
        value = yaml.safe_load(text)
        if isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
            return float(value)
        return value

    return {k: scalar(v) for k, v in parse_pairs(values, "--set").items()}


def split_list(value: str | None) -> list[str] | None:
    """A comma-separated option value -> its items (``None`` when empty or not given)."""
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


def cluster_options(*, device: str, shard_size: int, limit: int | None, workers: int | None,
                    scheduler: str | None, cluster: str, slurm_queue: str | None,
                    slurm_account: str | None, slurm_cores: int, slurm_memory: str,
                    slurm_gpus: int, slurm_walltime: str, slurm_jobs: int,
                    slurm_log_dir: str = "slurm-logs", slurm_resubmits: int = 4,
                    slurm_wait: float = 3600.0) -> ClusterOptions:
    """Where a Dask run (extract, transcribe) runs, with its options checked by name."""
    from pipeline.cluster import ClusterOptions  # here: it imports Dask

    if cluster not in ("local", "slurm"):
        raise OptionError(f"--cluster {cluster!r}: valid values are local, slurm")
    if device not in ("cpu", "cuda", "auto"):
        raise OptionError(f"--device {device!r}: valid values are cpu, cuda, auto")
    for option, count in (("--shard-size", shard_size), ("--limit", limit),
                          ("--workers", workers), ("--slurm-jobs", slurm_jobs),
                          ("--slurm-cores", slurm_cores)):
        if count is not None and count < 1:
            raise OptionError(f"{option} {count}: must be at least 1")
    if slurm_resubmits < 0:
        raise OptionError(f"--slurm-resubmits {slurm_resubmits}: must be 0 or more")
    if slurm_wait <= 0:
        raise OptionError(f"--slurm-wait {slurm_wait}: must be more than 0 seconds")
    if slurm_gpus not in (0, 1):
        raise OptionError(f"--slurm-gpus {slurm_gpus}: each SLURM job runs one worker with 0 "
                          "or 1 GPU; use --slurm-jobs for more GPUs")
    return ClusterOptions(workers=workers, scheduler=scheduler, cluster=cluster,
                          slurm_queue=slurm_queue, slurm_account=slurm_account,
                          slurm_cores=slurm_cores, slurm_memory=slurm_memory,
                          slurm_gpus=slurm_gpus, slurm_walltime=slurm_walltime,
                          slurm_jobs=slurm_jobs, slurm_log_dir=slurm_log_dir,
                          slurm_resubmits=slurm_resubmits, wait_s=slurm_wait)
