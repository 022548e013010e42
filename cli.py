"""The command line: ``cli <command> --help`` for each.

Thin by design: every command parses its options and calls one importable ``run_*`` function
(or the library function it names); all logic lives in :mod:`pipeline` and :mod:`heads`.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import re
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape
from rich.table import Table

from pipeline.errors import UserError

P = ParamSpec("P")
R = TypeVar("R")

if TYPE_CHECKING:
    from pipeline.store import StoreManifest

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Emotion-video feature stores and the ConCluGen head trainer.")
console = Console()
_state = {"verbose": False}

DatasetOpt = Annotated[str, typer.Option(
    "--dataset", "-d", help="meld | caer | mosei | voxceleb2 | afewva | videos (any folder "
                            "or --list of videos)")]
RootOpt = Annotated[Path | None, typer.Option(
    help="Dataset root in its official raw layout (videos: the folder the clips are under; "
         "default the --list's folder).")]
ListOpt = Annotated[Path | None, typer.Option(
    "--list", help="--dataset videos: a CSV with the column path and optional sample_id, "
                   "split, label, transcript, start_s, end_s (what scan --out FILE.csv "
                   "writes).")]
DeviceOpt = Annotated[str, typer.Option(help="auto | cpu | cuda | cuda:N")]
# Where a Dask run (extract, transcribe) runs.
WorkersOpt = Annotated[int | None, typer.Option(
    help="Local Dask workers (default: one per core, or one per GPU).")]
SchedulerOpt = Annotated[str | None, typer.Option(
    help="Address of a running Dask scheduler, e.g. tcp://host:8786.")]
ClusterOpt = Annotated[str, typer.Option(help="local | slurm (starts workers via dask-jobqueue)")]
SlurmQueueOpt = Annotated[str | None, typer.Option(help="SLURM partition (sbatch -p).")]
SlurmAccountOpt = Annotated[str | None, typer.Option(help="SLURM account (sbatch -A).")]
SlurmCoresOpt = Annotated[int, typer.Option(
    help="Cores per SLURM job (--cpus-per-task); its worker runs a task per core.")]
SlurmMemoryOpt = Annotated[str, typer.Option(help="Memory per SLURM job (--mem).")]
SlurmGpusOpt = Annotated[int, typer.Option(
    help="1: each SLURM job (one worker) gets a GPU (--gres=gpu:1).")]
SlurmWalltimeOpt = Annotated[str, typer.Option(help="Walltime per SLURM job (-t).")]
SlurmJobsOpt = Annotated[int, typer.Option(help="SLURM jobs kept running (one worker each).")]
SlurmLogDirOpt = Annotated[str, typer.Option(
    help="Folder of the jobs' output (-o/-e), one .out/.err pair per job.")]
SlurmResubmitsOpt = Annotated[int, typer.Option(
    help="Jobs that end (cancelled, pre-empted, walltime) replaced before the run stops.")]
SlurmWaitOpt = Annotated[float, typer.Option(
    help="Seconds with no worker connected (jobs queued or gone) before the run stops.")]
AnnotationsOpt = Annotated[Path | None, typer.Option(
    help="Folder with the annotation files, if they are not under --root.")]
WeightsDirOpt = Annotated[Path | None, typer.Option(
    help="Folder of fetched checkpoints (`cli weights fetch --to DIR`, for offline nodes); "
         "default $CONCLUGEN_WEIGHTS_DIR, else ~/.cache/conclugen/weights.")]


@app.callback()
def _setup(verbose: Annotated[bool, typer.Option("--verbose", "-v",
                                                 help="Debug logging.")] = False) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(message)s", handlers=[_log_handler()])
    _state["verbose"] = verbose


def _log_handler() -> logging.Handler:
    """Rich's handler in a terminal; elsewhere (a batch job's log, CI) plain lines with an ISO
    date, never wrapped: a path or a progress line stays whole, for grep."""
    import sys

    if sys.stderr.isatty():
        return RichHandler(console=Console(stderr=True), show_path=False)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s",
                                           datefmt="%Y-%m-%dT%H:%M:%S%z"))
    return handler


def _quiet_dask() -> None:
    """Dask's scheduler runs in this process and narrates every worker start and stop; its
    logging config sets levels on the sub-loggers, so each one is lowered, after the import."""
    import distributed  # noqa: F401 - importing it installs the loggers to quiet

    if _state["verbose"]:
        return
    for name in list(logging.root.manager.loggerDict):
        if name.split(".")[0] in ("distributed", "bokeh", "tornado"):
            logging.getLogger(name).setLevel(logging.WARNING)


def _fail(message: str) -> typer.Exit:
    # One unwrapped line: a message is grepped for in logs as often as it is read.
    Console(stderr=True).print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)
    return typer.Exit(2)


class OptionError(UserError, ValueError):
    """A command-line option with a value the command cannot use."""


class Terminated(BaseException):
    """SIGTERM, raised in the main thread as Python raises KeyboardInterrupt for SIGINT, so
    that every ``finally`` and ``with`` (locks, Dask clients, temporary files) unwinds."""


_received: list[int] = []


def _on_signal(signum: int, frame: object) -> None:
    _received.append(signum)
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    raise Terminated(signum)


@contextlib.contextmanager
def _signals_caught() -> Iterator[None]:
    """SIGINT and SIGTERM handled by :func:`_on_signal` while a command runs (main thread
    only: Python delivers signals there)."""
    _received.clear()
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, _on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def user_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Run ``command``; a :class:`~pipeline.errors.UserError` (bad option, config, dataset,
    store, checkpoint, device, weights) becomes its message on stderr and exit code 2. SIGINT
    and SIGTERM stop it with one line and exit code 130 or 143, after its locks and workers
    are released (whatever the interrupted code raised while unwinding, such as Dask's
    ``CancelledError``, is not shown). Anything else is a bug and surfaces as a traceback
    (exit code 1)."""
    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            with _signals_caught():
                return command(*args, **kwargs)
        except UserError as err:
            raise _fail(str(err)) from None
        except (typer.Exit, SystemExit):
            raise
        except BaseException as err:
            signum = _received[0] if _received else (
                signal.SIGINT if isinstance(err, KeyboardInterrupt) else None)
            if signum is None:
                raise
            Console(stderr=True).print(f"interrupted ({signal.Signals(signum).name}); run the "
                                       "same command to resume", soft_wrap=True)
            raise typer.Exit(128 + signum) from None
    return wrapper


@app.command("datasets")
@user_errors
def datasets_cmd() -> None:
    """List the supported datasets, their labels and continuous targets."""
    from pipeline.datasets import DATASETS
    from pipeline.manifest import load_manifest

    table = Table("name", "dataset", "labels", "faces cropped")
    for name in DATASETS:
        m = load_manifest(name)
        labels = ", ".join(m.labels) + (" (multi-label)" if m.multilabel else "")
        targets = ", ".join(m.targets) + " (continuous)" if m.targets else ""
        table.add_row(name, m.title, "; ".join(filter(None, (labels, targets))) or "unlabeled",
                      "yes" if m.faces.crop else "no")
    console.print(table)


@app.command("sample-data")
@user_errors
def sample_data_cmd(
    out: Annotated[Path, typer.Argument(help="New folder for the dataset's raw layout.")],
    dataset: DatasetOpt = "meld",
    clips: Annotated[int, typer.Option(help="Number of usable clips.")] = 48,
    seed: Annotated[int, typer.Option(help="Same seed, same dataset.")] = 0,
) -> None:
    """Generate the small deterministic sample dataset in a dataset's official raw layout."""
    from pipeline.sample_data import generate

    root = generate(dataset, out, clips=clips, seed=seed)
    console.print(f"wrote the {dataset} sample dataset to [bold]{root}[/]")


def run_scan(dataset: str, root: Path | None, *, annotations: Path | None = None,
             transcripts: Path | None = None, out: Path | None = None,
             list_file: Path | None = None) -> None:
    """Read a raw dataset, print counts per split and label and the failures, write the table
    (``out``: a videos list ``.csv`` that ``extract --dataset videos --list`` takes back, or
    the sample table as ``.parquet``)."""
    from pipeline.datasets import dataset_source, scan
    from pipeline.datasets.video_list import write_list

    if out is not None and out.suffix not in (".csv", ".parquet"):
        raise OptionError(f"--out {out}: .csv (a videos list) or .parquet (the sample table)")
    root, manifest = dataset_source(dataset, root, list_file=list_file, transcripts=transcripts)
    table = scan(dataset, root, manifest=manifest, annotations=annotations,
                 transcripts=transcripts)
    _print_scan(table, manifest)
    if out is not None and out.suffix == ".csv":
        rows = write_list(table, manifest.labels, root.resolve(), out)
        console.print(f"videos list of {rows} clips written to [bold]{out}[/]; extract it with "
                      f"`cli extract --dataset videos --list {out} --root {root.resolve()}`")
    elif out is not None:
        table.write(out)
        console.print(f"sample table written to [bold]{out}[/] "
                      f"(failures beside it: {out.with_name(out.stem + '.failures.parquet').name})")


def _print_scan(table: object, manifest: object) -> None:
    from pipeline.datasets.table import SampleTable
    from pipeline.manifest import DatasetManifest

    assert isinstance(table, SampleTable) and isinstance(manifest, DatasetManifest)
    samples = table.samples.to_pandas()
    counts = Table(title=f"{table.dataset}: {len(samples)} clips", show_lines=False)
    counts.add_column("split")
    names = list(manifest.labels) if manifest.labels else ["unlabeled"]
    for name in names:
        counts.add_column(name, justify="right")
    counts.add_column("total", justify="right")
    for split, group in samples.groupby("split", sort=False):
        if table.multilabel:
            per = [int(sum(v[i] > 0 for v in group["labels"])) for i in range(len(names))]
        elif manifest.labels:
            per = [int((group["label"] == i).sum()) for i in range(len(names))]
        else:
            per = [len(group)]
        counts.add_row(str(split), *map(str, per), str(len(group)))
    console.print(counts)
    failures = table.failures.to_pandas()
    if len(failures):
        fails = Table("split", "sample_id", "reason", "message", title=f"{len(failures)} failures")
        for row in failures.itertuples():
            fails.add_row(row.split, row.sample_id, row.reason, row.message)
        console.print(fails)


@app.command("scan")
@user_errors
def scan_cmd(
    dataset: DatasetOpt,
    root: RootOpt = None,
    list_: ListOpt = None,
    annotations: Annotated[Path | None, typer.Option(
        help="Folder with the annotation files, if they are not under --root.")] = None,
    transcripts: Annotated[Path | None, typer.Option(
        help="Transcript sidecar CSV (sample_id,transcript) for datasets without text.")] = None,
    out: Annotated[Path | None, typer.Option(
        help="FILE.csv: a videos list (edit it, then extract --dataset videos --list); "
             "FILE.parquet: the sample table.")] = None,
) -> None:
    """Read a raw dataset: counts per split and label, the failures, the sample table."""

    run_scan(dataset, root, annotations=annotations, transcripts=transcripts, out=out,
             list_file=list_)


def _parse_weights(values: list[str], modalities: list[str] | None) -> dict[str, str]:
    """``random`` (every modality) or ``KEY=VALUE`` pairs -> {key: weights}."""
    from pipeline.extract_config import MODALITIES

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


def _parse_pairs(values: list[str], option: str,
                 keys: tuple[str, ...] | None = None) -> dict[str, str]:
    out = {}
    for value in values:
        if "=" not in value:
            raise OptionError(f"{option} {value}: expected KEY=VALUE")
        key, val = value.split("=", 1)
        if keys is not None and key not in keys:
            raise OptionError(f"{option} {value}: unknown key {key!r}; valid: {list(keys)}")
        out[key] = val
    return out


def run_extract_cli(dataset: str, root: Path | None, out: str, *, config: str | None,
                    modalities: list[str] | None, weights: dict[str, str],
                    backbones: dict[str, str], views: int | None, detect_fps: float | None,
                    shard_size: int,
                    limit: int | None, device: str, annotations: Path | None,
                    transcripts: Path | None, cluster: object, list_file: Path | None = None,
                    faces: str | None = None) -> StoreManifest:
    """Extract with progress (a bar in a terminal, log lines elsewhere); returns the store's
    manifest. Without ``modalities``, the config's that the dataset has are extracted."""
    from pipeline.datasets import dataset_source
    from pipeline.datasets.modalities import follow_dataset
    from pipeline.extract_config import load_extract_config
    from pipeline.progress import Progress, failures_text
    from pipeline.cluster import ClusterOptions
    from pipeline.run import run_extract

    assert isinstance(cluster, ClusterOptions)
    _quiet_dask()
    root, dataset_manifest = dataset_source(dataset, root, list_file=list_file, faces=faces,
                                            transcripts=transcripts)
    cfg = load_extract_config(config, modalities=modalities, weights=weights or None,
                              backbones=backbones or None, views=views,
                              detect_fps=detect_fps)
    if modalities is None:
        cfg = follow_dataset(cfg, dataset_manifest)
    bars: list[Progress] = []

    def on_plan(total: int, done: int) -> None:
        bars.append(Progress("extract", total, "clips", initial=done, failed="0", workers=0))

    def on_progress(done: int, failed: Counter[str], workers: int) -> None:
        bars[0].update(done, failed=failures_text(failed), workers=workers)

    try:
        manifest = run_extract(dataset, root, out, cfg=cfg, annotations=annotations,
                               transcripts=transcripts, limit=limit, shard_size=shard_size,
                               device=device, cluster=cluster, manifest=dataset_manifest,
                               on_plan=on_plan,
                               on_progress=on_progress)
    finally:
        for bar in bars:
            bar.close()
    _print_extract_summary(out, manifest)
    return manifest


def _print_extract_summary(out: str, manifest: StoreManifest) -> None:
    from pipeline.store import open_store, redact_url

    counts = manifest.counts
    console.print(f"[bold green]store complete[/]: {redact_url(out)}  "
                  f"store_id {manifest.store_id[:12]}"
                  f"  samples {counts.samples}  failures {counts.failures}", soft_wrap=True)
    with open_store(out) as store:
        failures = store.failures.to_pandas()
    if len(failures):
        console.print("failures by reason: " + ", ".join(
            f"{r} {n}" for r, n in failures["reason"].value_counts().items()), soft_wrap=True)
    timings = manifest.timings
    if timings:
        console.print("seconds per stage (summed over workers): " + ", ".join(
            f"{k} {v:.1f}" for k, v in sorted(timings.items(), key=lambda kv: -kv[1])),
            soft_wrap=True)  # a batch log's line stays whole


def _cluster_options(*, device: str, shard_size: int, limit: int | None, workers: int | None,
                     scheduler: str | None, cluster: str, slurm_queue: str | None,
                     slurm_account: str | None, slurm_cores: int, slurm_memory: str,
                     slurm_gpus: int, slurm_walltime: str, slurm_jobs: int,
                     slurm_log_dir: str = "slurm-logs", slurm_resubmits: int = 4,
                     slurm_wait: float = 3600.0) -> object:
    """Where a Dask run (extract, transcribe) runs, with its options checked by name."""
    from pipeline.cluster import ClusterOptions

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


@app.command("extract")
@user_errors
def extract_cmd(
    dataset: DatasetOpt,
    out: Annotated[str, typer.Option(help="The feature store: a folder or fsspec URL.")],
    root: RootOpt = None,
    list_: ListOpt = None,
    faces: Annotated[str | None, typer.Option(
        help="--dataset videos: crop (default; a clip without a face fails with no_face) | "
             "crop-or-full (such a clip is kept uncropped) | none (never crop).")] = None,
    config: Annotated[str | None, typer.Option(
        help="Extraction config YAML (default manifests/extract.yaml).")] = None,
    modalities: Annotated[str | None, typer.Option(
        help="Comma-separated subset of frames_2d,frames_3d,audio,text (default: those the "
             "dataset has).")] = None,
    weights: Annotated[list[str], typer.Option(
        help="'random' (every backbone), or KEY=ID|PATH|URL|random per modality; repeatable.")
    ] = [],  # noqa: B006 - Typer needs a literal default
    backbone: Annotated[list[str], typer.Option(
        help="KEY=NAME to use another registered backbone, e.g. frames_3d=r2plus1d_18.")
    ] = [],  # noqa: B006
    views: Annotated[int | None, typer.Option(help="Views per clip (1 = clean only).")] = None,
    detect_fps: Annotated[float | None, typer.Option(
        help="Face detection rate (default 1; 2-4 follows fast heads).")] = None,
    shard_size: Annotated[int, typer.Option(help="Clips per shard (one Dask task).")] = 256,
    limit: Annotated[int | None, typer.Option(help="Only the first N clips (quick tries).")
                     ] = None,
    device: Annotated[str, typer.Option(help="cpu | cuda | auto")] = "auto",
    workers: WorkersOpt = None,
    scheduler: SchedulerOpt = None,
    cluster: ClusterOpt = "local",
    slurm_queue: SlurmQueueOpt = None,
    slurm_account: SlurmAccountOpt = None,
    slurm_cores: SlurmCoresOpt = 8,
    slurm_memory: SlurmMemoryOpt = "32GB",
    slurm_gpus: SlurmGpusOpt = 0,
    slurm_walltime: SlurmWalltimeOpt = "04:00:00",
    slurm_jobs: SlurmJobsOpt = 1,
    slurm_log_dir: SlurmLogDirOpt = "slurm-logs",
    slurm_resubmits: SlurmResubmitsOpt = 4,
    slurm_wait: SlurmWaitOpt = 3600.0,
    annotations: AnnotationsOpt = None,
    transcripts: Annotated[Path | None, typer.Option(
        help="Transcript sidecar CSV (sample_id,transcript).")] = None,
    weights_dir: WeightsDirOpt = None,
) -> None:
    """Extract a raw dataset into a feature store (resumable: run it again after a crash)."""
    from pipeline.backbones.download import use_weights_dir
    from pipeline.extract_config import MODALITIES

    use_weights_dir(weights_dir)

    mods = [m.strip() for m in modalities.split(",") if m.strip()] if modalities else None
    opts = _cluster_options(
        device=device, shard_size=shard_size, limit=limit, workers=workers, scheduler=scheduler,
        cluster=cluster, slurm_queue=slurm_queue, slurm_account=slurm_account,
        slurm_cores=slurm_cores, slurm_memory=slurm_memory, slurm_gpus=slurm_gpus,
        slurm_walltime=slurm_walltime, slurm_jobs=slurm_jobs, slurm_log_dir=slurm_log_dir,
        slurm_resubmits=slurm_resubmits, slurm_wait=slurm_wait)
    run_extract_cli(dataset, root, out, config=config, modalities=mods,
                    weights=_parse_weights(weights, mods),
                    backbones=_parse_pairs(backbone, "--backbone", MODALITIES), views=views,
                    detect_fps=detect_fps, shard_size=shard_size, limit=limit, device=device,
                    annotations=annotations, transcripts=transcripts, cluster=opts,
                    list_file=list_, faces=faces)


def run_transcribe_cli(dataset: str, root: Path, *, out: Path | None, settings: object,
                       annotations: Path | None, limit: int | None, shard_size: int,
                       device: str, cluster: object) -> None:
    """Transcribe with progress (a bar in a terminal, log lines elsewhere) and a summary."""
    from pipeline.asr import AsrSettings
    from pipeline.progress import Progress
    from pipeline.transcribe import run_transcribe

    assert isinstance(settings, AsrSettings)
    _quiet_dask()
    bars: list[Progress] = []

    def on_plan(total: int, done: int) -> None:
        bars.append(Progress("transcribe", total, "clips", initial=done, failed=0))

    def on_progress(done: int, failed: int) -> None:
        bars[0].update(done, failed=failed)

    try:
        result = run_transcribe(dataset, root, out=out, settings=settings,
                                annotations=annotations, limit=limit, shard_size=shard_size,
                                device=device, cluster=cluster, on_plan=on_plan,
                                on_progress=on_progress)
    finally:
        for bar in bars:
            bar.close()
    failed = ", ".join(f"{r} {n}" for r, n in sorted(result.failed.items())) or "none"
    console.print(f"[bold green]transcripts written[/]: {result.sidecar} ({result.clips} clips: "
                  f"{result.transcribed} transcribed, {result.empty} of them empty; without "
                  f"decodable speech: {failed}); provenance in {result.provenance_file.name}")


@app.command("transcribe")
@user_errors
def transcribe_cmd(
    dataset: DatasetOpt,
    root: Annotated[Path, typer.Option(help="Dataset root in its official raw layout.")],
    out: Annotated[Path | None, typer.Option(
        help="The sidecar CSV to write (default: the one extract reads, e.g. "
             "ROOT/transcripts.csv).")] = None,
    model: Annotated[str, typer.Option(
        help="Hugging Face ASR model id or folder (Speech2Text, Whisper, ...), or "
             "'pocketsphinx' (offline US English, from its PyPI wheel).")
    ] = "facebook/s2t-large-librispeech-asr",
    language: Annotated[str, typer.Option(
        help="Spoken language (Whisper decodes in it; recorded for the others).")] = "en",
    num_beams: Annotated[int | None, typer.Option(
        help="Beam width (default: the model's generation config).")] = None,
    max_new_tokens: Annotated[int, typer.Option(help="Longest transcript in tokens.")] = 200,
    batch_clips: Annotated[int, typer.Option(
        help="Clips per model call (larger on a GPU).")] = 8,
    shard_size: Annotated[int, typer.Option(
        help="Clips per shard (one Dask task; the unit a rerun resumes from).")] = 64,
    limit: Annotated[int | None, typer.Option(help="Only the first N clips.")] = None,
    device: Annotated[str, typer.Option(help="cpu | cuda | auto")] = "auto",
    workers: WorkersOpt = None,
    scheduler: SchedulerOpt = None,
    cluster: ClusterOpt = "local",
    slurm_queue: SlurmQueueOpt = None,
    slurm_account: SlurmAccountOpt = None,
    slurm_cores: SlurmCoresOpt = 8,
    slurm_memory: SlurmMemoryOpt = "32GB",
    slurm_gpus: SlurmGpusOpt = 0,
    slurm_walltime: SlurmWalltimeOpt = "04:00:00",
    slurm_jobs: SlurmJobsOpt = 1,
    annotations: AnnotationsOpt = None,
) -> None:
    """Speech recognition over a dataset's clips, written as its transcript sidecar
    (resumable: run it again after a crash)."""
    from pipeline.asr import AsrSettings

    opts = _cluster_options(
        device=device, shard_size=shard_size, limit=limit, workers=workers, scheduler=scheduler,
        cluster=cluster, slurm_queue=slurm_queue, slurm_account=slurm_account,
        slurm_cores=slurm_cores, slurm_memory=slurm_memory, slurm_gpus=slurm_gpus,
        slurm_walltime=slurm_walltime, slurm_jobs=slurm_jobs)
    settings = AsrSettings(model=model, language=language, num_beams=num_beams,
                           max_new_tokens=max_new_tokens, batch_clips=batch_clips)
    run_transcribe_cli(dataset, root, out=out, settings=settings, annotations=annotations,
                       limit=limit, shard_size=shard_size, device=device, cluster=opts)


_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def _parse_sets(values: list[str]) -> dict[str, object]:
    """``--set key.sub=value`` pairs; values are parsed as YAML scalars (numbers, bools, lists).

    A number in exponent notation without a dot (``1e-4``) is a string to YAML 1.1's
    resolver: it is read as the number it is."""
    import yaml

    def scalar(text: str) -> object:
        value = yaml.safe_load(text)
        if isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
            return float(value)
        return value

    return {k: scalar(v) for k, v in _parse_pairs(values, "--set").items()}


def _split_list(value: str | None) -> list[str] | None:
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


@app.command("pretrain")
@user_errors
def pretrain_cmd(
    store: Annotated[str, typer.Option(help="The feature store (folder or fsspec URL).")],
    out: Annotated[Path, typer.Option(help="The run folder to create (or resume).")],
    objective: Annotated[str, typer.Option(
        help="conclugen | conclu | congen | multi_cont | generative | instance_cont")
    ] = "conclugen",
    modalities: Annotated[str | None, typer.Option(
        help="Comma-separated subset of video,audio,text (the paper's ablations).")] = None,
    preset: Annotated[str | None, typer.Option(
        help="A preset of manifests/pretrain.yaml, e.g. 'cpu' (small, fast).")] = None,
    config: Annotated[Path | None, typer.Option(help="A YAML config layered on top.")] = None,
    set_: Annotated[list[str], typer.Option(
        "--set", help="KEY=VALUE config override, e.g. --set optim.lr=1e-4; repeatable.")
    ] = [],  # noqa: B006 - Typer needs a literal default
    epochs: Annotated[int | None, typer.Option(help="Total epochs.")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed (default: the config's).")] = None,
    device: DeviceOpt = "auto",
    resume: Annotated[bool, typer.Option(
        help="Continue the run in --out from its last checkpoint.")] = False,
) -> None:
    """Pretrain the ConCluGen heads on a feature store with one self-supervised objective."""
    from heads.pretrain.train import run_pretrain

    run = run_pretrain(store, objective, out, config=config, overrides=_parse_sets(set_),
                       modalities=_split_list(modalities), preset=preset, device=device,
                       resume=resume, seed=seed, epochs=epochs, progress=True)
    console.print(f"[bold green]run complete[/]: {run}  (config.yaml, metrics.jsonl, "
                  "checkpoints/last.pt)")


store_app = typer.Typer(no_args_is_help=True, help="Inspect, verify, compare and merge stores.")
app.add_typer(store_app, name="store")
StoreArg = Annotated[str, typer.Argument(help="A feature store: folder or fsspec URL.")]


def _short(value: object, width: int = 60) -> str:
    text = str(value)
    return text if len(text) <= width else text[:width - 1] + "…"


@store_app.command("info")
@user_errors
def store_info_cmd(store: StoreArg) -> None:
    """Dataset, counts per split and label, modalities and how they were made, failures."""
    from pipeline.datasets.transcripts import describe_transcripts
    from pipeline.store.manifest import FORMAT
    from pipeline.store.ops import store_info

    info = store_info(store)
    console.print(f"[bold]{info.url}[/]  {info.format}  store_id {info.store_id}")
    console.print(f"feature space {info.feature_space[:16]} (stores with the same feature space "
                  "share pretrained heads)")
    if info.format != FORMAT:
        console.print(f"[yellow]{info.format} store: `cli store upgrade {info.url}` rewrites its "
                      "store.json in the current format (the shards stay)[/]")
    console.print(f"dataset {info.dataset} (manifest {str(info.manifest_sha256)[:12]}), "
                  f"{info.samples} samples, {info.failures} failures, {info.views} view(s), "
                  f"{info.shards} shards, {info.size_bytes / 1e6:.1f} MB, created {info.created}")
    if info.preset is not None:
        console.print(f"preset {info.preset}")
    if info.transcripts is not None:
        console.print("transcripts: " + escape(describe_transcripts(info.transcripts)),
                      highlight=False)
    if info.random_weights:
        console.print(f"[bold red]RANDOM WEIGHTS in {', '.join(info.random_weights)}: these "
                      "features are for tests only, not for research results[/]")
    names = [*info.label_names, "unlabeled"]
    counts = Table("split", *names, title="samples per split and label")
    for split, per in info.counts.items():
        counts.add_row(split, *(str(per.get(n, 0)) for n in names))
    console.print(counts)
    mods = Table("key", "backbone", "weights", "weights sha256", "dim", "dtype",
                 title="modalities")
    for m in info.modalities:
        weights = f"[bold red]{m.weights}[/]" if m.random_weights else m.weights
        mods.add_row(m.key, m.backbone, weights, str(m.weights_sha256)[:16], str(m.dim), m.dtype)
    console.print(mods)
    for m in info.modalities:
        console.print(f"[bold]{m.key}[/] preprocessing: " + escape(", ".join(
            f"{k}={_short(v, 40)}" for k, v in m.preprocessing.items())), highlight=False)
    if info.failures_by_reason:
        console.print("failures by reason: " + ", ".join(
            f"{r} {n}" for r, n in info.failures_by_reason.items()))
    console.print("software: " + ", ".join(f"{k} {v}" for k, v in info.software.items()))


@store_app.command("verify")
@user_errors
def store_verify_cmd(store: StoreArg) -> None:
    """Recompute every checksum and cross-check store.json, index, failures and shards.

    Exit code 1 when anything is wrong, with one line per problem.
    """
    from pipeline.store.ops import verify_store

    report = verify_store(store)
    for note in report.notes:
        console.print(f"[dim]note: {note}[/]")
    if report.problems:
        for problem in report.problems:
            console.print(f"[red]PROBLEM[/] {escape(str(problem))}")
        console.print(f"[bold red]{len(report.problems)} problem(s)[/] in {report.url}")
        raise typer.Exit(1)
    console.print(f"[bold green]OK[/]: {report.url}: {report.shards} shards, {report.rows} rows, "
                  f"{report.bytes_hashed / 1e6:.1f} MB hashed")


@store_app.command("diff")
@user_errors
def store_diff_cmd(a: StoreArg, b: StoreArg) -> None:
    """What differs in provenance between two stores; exit 1 when they are not comparable."""
    from pipeline.store.ops import diff_stores

    diff = diff_stores(a, b)
    blocking = {d.path for d in diff.blocking}
    table = Table("field", "A", "B", title=f"A = {diff.a}\nB = {diff.b}")
    for d in diff.differences:
        style = "red" if d.path in blocking else None
        table.add_row(d.path, _short(d.a), _short(d.b), style=style)
    if diff.differences:
        console.print(table)
    verdict = "[bold green]comparable[/]" if diff.comparable else "[bold red]not comparable[/]"
    console.print(f"{verdict}: {diff.reason}")
    console.print(f"samples only in A {diff.samples_only_a}, only in B {diff.samples_only_b}, "
                  f"in both {diff.samples_both}")
    if diff.same_feature_space:
        console.print("[green]same feature space[/]: heads pretrained on one can be evaluated "
                      "on the other")
    else:
        console.print("[yellow]different feature spaces[/]: " + escape("; ".join(
            f"{key}: " + ", ".join(items) for key, items in diff.feature_space.items())))
    if not diff.comparable:
        raise typer.Exit(1)


@store_app.command("merge")
@user_errors
def store_merge_cmd(
    stores: Annotated[list[str], typer.Argument(help="Two or more stores of one configuration.")],
    out: Annotated[str, typer.Option(help="The merged store to create.")],
) -> None:
    """Combine stores with identical provenance (e.g. splits extracted by different teams)."""
    from pipeline.store.merge import merge_stores

    result = merge_stores(stores, out)
    console.print(f"[bold green]merged[/] {len(result.sources)} stores into {result.url}: "
                  f"store_id {result.store_id[:12]}, {result.shards} shards, {result.samples} "
                  f"samples, {result.failures} failures ({result.dropped_failures} failure rows "
                  "dropped: extracted by another source)")


@store_app.command("upgrade")
@user_errors
def store_upgrade_cmd(store: StoreArg) -> None:
    """Rewrite an older store's store.json in the current format (atomically; shards kept)."""
    from pipeline.store.ops import upgrade_store

    result = upgrade_store(store)
    if result.changed:
        console.print(f"[bold green]upgraded[/] {result.url}: {result.from_format} -> "
                      f"{result.to_format}, store_id {result.store_id[:12]} kept")
    else:
        console.print(f"{result.url} is already {result.to_format}: nothing to do")


@store_app.command("add-label-texts")
@user_errors
def store_add_label_texts_cmd(
    store: StoreArg,
    device: Annotated[str, typer.Option(help="cpu | cuda | cuda:N (a few dozen texts).")] = "cpu",
) -> None:
    """Embed the label texts (prompts and descriptions) with the store's own text backbone.

    CLEF's text prototypes (cli eval --protocol clef) are read from them; extraction adds them,
    this command adds them to a store extracted before (or replaces them).
    """
    from pipeline.label_texts import add_label_texts

    manifest = add_label_texts(store, device=device)
    info = manifest.label_texts
    assert info is not None
    console.print(f"[bold green]added[/] {info.rows} label texts to {store}, embedded by "
                  f"{info.backbone} (weights {str(info.weights_sha256)[:16]}...)")


def _print_metrics(result: dict, title: str) -> None:
    """Val and test metrics (mean ± std over seeds) as the paper's tables report them (a
    regression's: CCC, PCC, RMSE and SAGR, the means over its targets)."""
    summary = result.get("summary", {})
    names = REGRESSION_METRICS if result.get("task") == "regression" else PAPER_METRICS
    table = Table("split", *names, title=title)
    for split in ("val", "test"):
        if split not in summary:
            continue
        cells = []
        for name in names:
            value = summary[split].get(name) or {}
            mean, std = value.get("mean"), value.get("std")
            cells.append("-" if mean is None else f"{mean:.4f}" + (
                f" ± {std:.4f}" if std is not None else ""))
        table.add_row(split, *cells)
    console.print(table)


PAPER_METRICS = ("accuracy", "f1_weighted", "precision_weighted", "recall_weighted", "f1_macro")
REGRESSION_METRICS = ("ccc", "pcc", "rmse", "sagr")


@app.command("eval")
@user_errors
def eval_cmd(
    store: Annotated[str, typer.Option(help="The feature store the run was trained on.")],
    protocol: Annotated[str, typer.Option(
        help="linear | finetune | supervised (the paper's) | clef (text prototypes of the "
             "label names) | avce (valence/arousal regression on the store's continuous "
             "targets)")] = "linear",
    run: Annotated[Path | None, typer.Option(
        help="The pretraining run (not needed for supervised and avce; clef uses it for its "
             "zero-shot row).")] = None,
    out: Annotated[Path | None, typer.Option(
        help="Output folder (default RUN/eval/<protocol>; required for supervised).")] = None,
    modalities: Annotated[str | None, typer.Option(
        help="Comma-separated modalities the classifier sees, e.g. video.")] = None,
    fusion: Annotated[str, typer.Option(help="concat | mean")] = "concat",
    preset: Annotated[str | None, typer.Option(help="e.g. cpu (small, fast).")] = None,
    set_: Annotated[list[str], typer.Option(
        "--set", help="KEY=VALUE override of manifests/evaluate.yaml; repeatable.")
    ] = [],  # noqa: B006 - Typer needs a literal default
    seeds: Annotated[int, typer.Option(help="Repeat with N seeds; mean and std.")] = 1,
    device: DeviceOpt = "auto",
    overwrite: Annotated[bool, typer.Option(
        "--overwrite", help="Replace an evaluation already in the output folder.")] = False,
) -> None:
    """Linear probe, fine-tuning, the supervised baseline (the paper's metrics), CLEF's text
    prototypes or AVCE's valence/arousal regression (RMSE, PCC, CCC, SAGR)."""
    from heads.evaluation.run import run_eval

    result = run_eval(store, run=run, protocol=protocol, out=out,
                      modalities=_split_list(modalities), fusion=fusion, preset=preset,
                      overrides=_parse_sets(set_), seeds=seeds, device=device,
                      overwrite=overwrite)
    _print_metrics(result, f"{protocol} evaluation " + (
        "(means over the targets)" if result.get("task") == "regression"
        else "(weighted by class support)"))
    if "out" in result:
        console.print(f"metrics.json, confusion matrices and the embedding plot in "
                      f"[bold]{result['out']}[/]")


@app.command("study")
@user_errors
def study_cmd(
    store: Annotated[list[str], typer.Option(
        help="A labelled downstream store (MELD, CAER, CMU-MOSEI; AFEW-VA for AVCE only); "
             "repeat for several.")],
    out: Annotated[Path, typer.Option(help="The study folder (a re-run resumes it).")],
    pretrain_store: Annotated[str | None, typer.Option(
        help="The store every objective is pretrained on once (VoxCeleb2 in the paper), in "
             "the downstream stores' feature space. Default: each downstream store itself.")
    ] = None,
    quick: Annotated[bool, typer.Option(
        help="CPU-sized models and few epochs: the same study in minutes.")] = False,
    seeds: Annotated[int, typer.Option(help="Seeds per evaluation.")] = 1,
    systems: Annotated[str, typer.Option(
        help="Comma-separated systems to run: conclugen (the paper's tables), clef (CLEF's "
             "text prototypes, trained and zero-shot; stores with label texts), avce "
             "(valence/arousal regression; stores with continuous targets). Each runs where "
             "it applies; the others' rows say why not.")] = "conclugen,clef,avce",
    device: DeviceOpt = "auto",
) -> None:
    """Pretrain every objective and ablation, evaluate each, write the paper's tables beside
    the paper's numbers (one set per downstream store), and the other systems' rows (CLEF,
    AVCE) below them."""
    from heads.study.run import run_study

    folder = run_study(store, out, pretrain_store=pretrain_store, quick=quick, device=device,
                       seeds=seeds, systems=_split_list(systems) or [])
    console.print((folder / "results.md").read_text(), markup=False, highlight=False)
    console.print(f"[bold green]study complete[/]: {folder / 'results.md'} (every table), "
                  f"{folder / 'results.csv'}; per dataset: {folder}/<dataset>/results.md, "
                  ".csv, .png" + (f"; regression: {folder / 'results_regression.csv'}"
                                  if (folder / "results_regression.csv").is_file() else ""))


@app.command("predict")
@user_errors
def predict_cmd(
    video: Annotated[Path, typer.Argument(
        help="A video file (any container PyAV reads), or a clip's folder of frames (as "
             "AFEW-VA releases them).")],
    run: Annotated[Path | None, typer.Option(
        help="The pretraining run with an evaluated classifier (linear, finetune, "
             "supervised); not needed with --classifier.")] = None,
    store: Annotated[str | None, typer.Option(
        help="The store the run was trained on (default: the one recorded).")] = None,
    transcript: Annotated[str | None, typer.Option(help="What is said in the clip.")] = None,
    classifier: Annotated[Path | None, typer.Option(
        help="A classifier.pt of cli eval, of any protocol (clef: classes; avce: valence and "
             "arousal). Default RUN/eval/linear/classifier.pt.")] = None,
    device: DeviceOpt = "auto",
    weights_dir: WeightsDirOpt = None,
) -> None:
    """Class probabilities for a new video (an avce classifier: its valence and arousal), with
    the store's preprocessing and backbones."""
    from heads.evaluation.predict import run_predict
    from pipeline.backbones.download import use_weights_dir

    use_weights_dir(weights_dir)

    result = run_predict(video, run=run, store=store, transcript=transcript,
                         device=device, classifier=classifier)
    if result["task"] == "regression":
        table = Table("target", "prediction", title=str(video))
        for name, value in result["predictions"].items():
            table.add_row(name, f"{value:+.4f}")
        console.print(table)
        return
    predicted = result["predicted"]
    chosen = set(predicted) if isinstance(predicted, list) else {predicted}
    table = Table("class", "probability", title=str(video))
    for name, p in sorted(result["probabilities"].items(), key=lambda kv: -kv[1]):
        table.add_row(name, f"{p:.4f}", style="bold" if name in chosen else None)
    console.print(table)
    console.print(f"predicted: [bold]{escape(str(result['predicted']))}[/]")


weights_app = typer.Typer(no_args_is_help=True,
                          help="The backbones' published checkpoints: list, fetch, verify.")
app.add_typer(weights_app, name="weights")


@weights_app.command("list")
@user_errors
def weights_list_cmd() -> None:
    """Per backbone: the checkpoint's source, checksum, size, licence, and whether it is
    fetched (the weights folder: $CONCLUGEN_WEIGHTS_DIR or ~/.cache/conclugen/weights)."""
    from pipeline.backbones.download import weights_dir
    from pipeline.backbones.registry import weights_rows

    console.print(f"weights folder: {escape(str(weights_dir()))}")
    for row in weights_rows():
        default = ", default" if row.default else ""
        console.print(f"\n[bold]{row.backbone}[/] ({row.key}{default}): {escape(row.weights)}",
                      soft_wrap=True)
        for label, value in (("source", row.source), ("url", row.url),
                             ("checksum", row.checksum), ("size", row.size),
                             ("licence", row.licence), ("fetched", row.cached),
                             ("note", row.note)):
            if value:
                console.print(f"  {label:<9} {escape(value)}", soft_wrap=True)


@weights_app.command("fetch")
@user_errors
def weights_fetch_cmd(
    to: Annotated[Path | None, typer.Option(
        help="Folder to fetch into (default: the weights folder); then --weights-dir DIR.")
    ] = None,
    backbone: Annotated[list[str], typer.Option(
        help="A backbone whose default checkpoint to fetch; repeatable (default: the default "
             "backbones').")] = [],  # noqa: B006 - Typer needs a literal default
    every: Annotated[bool, typer.Option("--all", help="Every published checkpoint.")] = False,
) -> None:
    """Download and verify checkpoints (on a login node, for clusters whose nodes are offline)."""
    from pipeline.backbones.registry import fetch_weights

    for identifier, path, fetched in fetch_weights(backbone or None, to=to, every=every):
        state = "fetched and verified" if fetched else "already there, verified"
        console.print(f"{identifier}: {state}: {escape(str(path))}", soft_wrap=True)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
