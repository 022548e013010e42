# Over 400 lines: each command's options, with their help, defaults and an example, are the
# command line's documentation; what the commands do lives in pipeline/commands and heads.
"""The command line: ``cli <command> --help`` (or ``conclugen <command> --help``) for each.

Thin by design: every command parses its options and calls one importable ``run_*`` function
(or the library function it names); all logic lives in :mod:`pipeline` and :mod:`heads`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pipeline.commands.console import console
from pipeline.commands.exits import user_errors
from pipeline.commands.help import PlainHelpGroup
from pipeline.commands.logs import setup_logging
from pipeline.commands.options import cluster_options, parse_pairs, parse_sets, split_list

app = typer.Typer(add_completion=False, no_args_is_help=True, cls=PlainHelpGroup,
                  help="Emotion-video feature stores and the ConCluGen head trainer.",
                  epilog="Example: cli extract --help")

DatasetOpt = Annotated[str, typer.Option(
    "--dataset", "-d", help="meld | caer | mosei | voxceleb2 | afewva | videos (any folder "
                            "or --list of videos)")]
RootOpt = Annotated[Path | None, typer.Option(
    help="Dataset root in its official raw layout (videos: the folder the clips are under; "
         "default the --list's folder).")]
ListOpt = Annotated[Path | None, typer.Option(
    "--list", help="--dataset videos: a CSV with the column path and optional sample_id, "
                   "split, label, transcript, start_s, end_s (what scan --out FILE.csv "
                   "writes). Default: none.")]
DeviceOpt = Annotated[str, typer.Option(help="auto | cpu | cuda | cuda:N")]
# Where a Dask run (extract, transcribe) runs.
WorkersOpt = Annotated[int | None, typer.Option(
    help="Local Dask workers (default: one per core, or one per GPU).")]
SchedulerOpt = Annotated[str | None, typer.Option(
    help="Address of a running Dask scheduler, e.g. tcp://host:8786 (default: none, a "
         "cluster of its own).")]
ClusterOpt = Annotated[str, typer.Option(help="local | slurm (starts workers via dask-jobqueue)")]
SlurmQueueOpt = Annotated[str | None, typer.Option(
    help="SLURM partition (sbatch -p; default: the cluster's).")]
SlurmAccountOpt = Annotated[str | None, typer.Option(
    help="SLURM account (sbatch -A; default: the user's).")]
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
    help="Folder with the annotation files, if they are not under --root (default: --root). "
         "voxceleb2: a list of the sample ids to read (one per line, or a .csv with a "
         "sample_id column; default: every clip under --root).")]
TranscriptsOpt = Annotated[Path | None, typer.Option(
    help="Transcript sidecar CSV (sample_id,transcript) for datasets without text (default: "
         "the dataset's sidecar under --root, if there is one).")]
WeightsDirOpt = Annotated[Path | None, typer.Option(
    help="Folder of fetched checkpoints (`cli weights fetch --to DIR`, for offline nodes); "
         "default $CONCLUGEN_WEIGHTS_DIR, else ~/.cache/conclugen/weights.")]


def _print_version(wanted: bool) -> None:
    if wanted:
        from pipeline.commands.version import version_line

        console.print(version_line(), highlight=False)
        raise typer.Exit()


@app.callback()
def _setup(verbose: Annotated[bool, typer.Option("--verbose", "-v",
                                                 help="Debug logging.")] = False,
           version: Annotated[bool, typer.Option(
               "--version", callback=_print_version, is_eager=True,
               help="The package's version, torch's and the git commit; then exit.")] = False,
           ) -> None:
    setup_logging(verbose)


@app.command("datasets", epilog="Example: cli datasets")
@user_errors
def datasets_cmd() -> None:
    """List the supported datasets, their labels and continuous targets."""
    from pipeline.commands.datasets import print_datasets

    print_datasets()


@app.command("sample-data", epilog=(
    "Example: cli sample-data data/meld-sample --dataset meld --clips 48"))
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


@app.command("scan", epilog="Example: cli scan --dataset meld --root data/MELD.Raw --out meld.csv")
@user_errors
def scan_cmd(
    dataset: DatasetOpt,
    root: RootOpt = None,
    list_: ListOpt = None,
    annotations: AnnotationsOpt = None,
    transcripts: TranscriptsOpt = None,
    out: Annotated[Path | None, typer.Option(
        help="FILE.csv: a videos list (edit it, then extract --dataset videos --list); "
             "FILE.parquet: the sample table. Default: none (printed only).")] = None,
) -> None:
    """Read a raw dataset: counts per split and label, the failures, the sample table."""
    from pipeline.commands.scan import run_scan

    run_scan(dataset, root, annotations=annotations, transcripts=transcripts, out=out,
             list_file=list_)


@app.command("extract", epilog=(
    "Example: cli extract --dataset meld --root data/MELD.Raw --out stores/meld --device cuda"))
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
        help="'random' (every backbone), or KEY=ID|PATH|URL|random per modality; repeatable "
             "(default: each backbone's pinned checkpoint, `cli weights list`).",
        metavar="KEY=WEIGHTS")
    ] = [],  # noqa: B006 - Typer needs a literal default
    backbone: Annotated[list[str], typer.Option(
        help="KEY=NAME to use another registered backbone, e.g. frames_3d=r2plus1d_18 "
             "(default: manifests/extract.yaml's).", metavar="KEY=NAME")
    ] = [],  # noqa: B006
    views: Annotated[int | None, typer.Option(
        help="Views per clip (1 = clean only; default: 1 from manifests/extract.yaml).")] = None,
    preset: Annotated[str | None, typer.Option(
        help="paper (the paper's choices) | reference (the reference code's, which produced "
             "the published numbers; docs/CHOICES.md); default: paper.")] = None,
    detect_fps: Annotated[float | None, typer.Option(
        help="Face detection rate, per second (default: 1.0 from manifests/extract.yaml; 2-4 "
             "follows fast heads).")] = None,
    shard_size: Annotated[int, typer.Option(help="Clips per shard (one Dask task).")] = 256,
    limit: Annotated[int | None, typer.Option(
        help="Only the first N clips (quick tries; default: every clip).")] = None,
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
    transcripts: TranscriptsOpt = None,
    weights_dir: WeightsDirOpt = None,
) -> None:
    """Extract a raw dataset into a feature store (resumable: run it again after a crash)."""
    from pipeline.backbones.download import use_weights_dir
    from pipeline.commands.extract import run_extract_cli
    from pipeline.commands.options import parse_weights
    from pipeline.extract_config import MODALITIES

    use_weights_dir(weights_dir)

    mods = [m.strip() for m in modalities.split(",") if m.strip()] if modalities else None
    opts = cluster_options(
        device=device, shard_size=shard_size, limit=limit, workers=workers, scheduler=scheduler,
        cluster=cluster, slurm_queue=slurm_queue, slurm_account=slurm_account,
        slurm_cores=slurm_cores, slurm_memory=slurm_memory, slurm_gpus=slurm_gpus,
        slurm_walltime=slurm_walltime, slurm_jobs=slurm_jobs, slurm_log_dir=slurm_log_dir,
        slurm_resubmits=slurm_resubmits, slurm_wait=slurm_wait)
    run_extract_cli(dataset, root, out, config=config, modalities=mods,
                    weights=parse_weights(weights, mods),
                    backbones=parse_pairs(backbone, "--backbone", MODALITIES), views=views,
                    detect_fps=detect_fps, shard_size=shard_size, limit=limit, device=device,
                    annotations=annotations, transcripts=transcripts, cluster=opts,
                    list_file=list_, faces=faces, preset=preset)


@app.command("transcribe", epilog=(
    "Example: cli transcribe --dataset caer --root data/CAER --model pocketsphinx"))
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
    limit: Annotated[int | None, typer.Option(
        help="Only the first N clips (default: every clip).")] = None,
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
    from pipeline.commands.transcribe import run_transcribe_cli

    opts = cluster_options(
        device=device, shard_size=shard_size, limit=limit, workers=workers, scheduler=scheduler,
        cluster=cluster, slurm_queue=slurm_queue, slurm_account=slurm_account,
        slurm_cores=slurm_cores, slurm_memory=slurm_memory, slurm_gpus=slurm_gpus,
        slurm_walltime=slurm_walltime, slurm_jobs=slurm_jobs)
    settings = AsrSettings(model=model, language=language, num_beams=num_beams,
                           max_new_tokens=max_new_tokens, batch_clips=batch_clips)
    run_transcribe_cli(dataset, root, out=out, settings=settings, annotations=annotations,
                       limit=limit, shard_size=shard_size, device=device, cluster=opts)


@app.command("pretrain", epilog=(
    "Example: cli pretrain --store stores/voxceleb2 --out runs/conclugen --epochs 100"))
@user_errors
def pretrain_cmd(
    store: Annotated[str, typer.Option(help="The feature store (folder or fsspec URL).")],
    out: Annotated[Path, typer.Option(help="The run folder to create (or resume).")],
    objective: Annotated[str, typer.Option(
        help="conclugen | conclu | congen | multi_cont | generative | instance_cont")
    ] = "conclugen",
    modalities: Annotated[str | None, typer.Option(
        help="Comma-separated subset of video,audio,text (the paper's ablations; default: the "
             "objective's in manifests/pretrain.yaml, video,audio,text but instance_cont's "
             "video).")] = None,
    preset: Annotated[str | None, typer.Option(
        help="paper | reference (the reference code's choices), optionally with cpu (small, "
             "fast): e.g. reference,cpu (default: paper).")] = None,
    config: Annotated[Path | None, typer.Option(
        help="A YAML config layered on top (default: none).")] = None,
    set_: Annotated[list[str], typer.Option(
        "--set", help="KEY=VALUE config override, e.g. --set optim.lr=1e-4; repeatable "
                      "(default: none).", metavar="KEY=VALUE")
    ] = [],  # noqa: B006 - Typer needs a literal default
    epochs: Annotated[int | None, typer.Option(
        help="Total epochs (default: 100 from manifests/pretrain.yaml).")] = None,
    seed: Annotated[int | None, typer.Option(
        help="Seed (default: 0 from manifests/pretrain.yaml).")] = None,
    device: DeviceOpt = "auto",
    resume: Annotated[bool, typer.Option(
        help="Continue the run in --out from its last checkpoint.")] = False,
    monitor_store: Annotated[str | None, typer.Option(
        help="A labelled store in the same feature space: log the k-NN accuracy of the "
             "representations (train split as the bank, val split as queries) to "
             "metrics.jsonl and TensorBoard while pretraining (default: none).")] = None,
    monitor_every: Annotated[int, typer.Option(
        help="Run the monitor every N epochs (and after the last).")] = 5,
    monitor_linear: Annotated[bool, typer.Option(
        help="The monitor also fits a quick linear probe.")] = False,
) -> None:
    """Pretrain the ConCluGen heads on a feature store with one self-supervised objective."""
    from heads.pretrain.monitor import MonitorSettings
    from heads.pretrain.train import run_pretrain

    watch = (None if monitor_store is None else
             MonitorSettings(monitor_store, every=monitor_every, linear=monitor_linear))
    run = run_pretrain(store, objective, out, config=config, overrides=parse_sets(set_),
                       modalities=split_list(modalities), preset=preset, device=device,
                       resume=resume, seed=seed, epochs=epochs, progress=True, monitor=watch)
    console.print(f"[bold green]run complete[/]: {run}  (config.yaml, metrics.jsonl, "
                  "checkpoints/last.pt)")


store_app = typer.Typer(no_args_is_help=True, help="Inspect, verify, compare and merge stores.",
                        epilog="Example: cli store info stores/meld")
app.add_typer(store_app, name="store")
StoreArg = Annotated[str, typer.Argument(help="A feature store: folder or fsspec URL.")]


@store_app.command("info", epilog="Example: cli store info stores/meld")
@user_errors
def store_info_cmd(store: StoreArg) -> None:
    """Dataset, counts per split and label, modalities and how they were made, failures."""
    from pipeline.commands.store import print_store_info

    print_store_info(store)


@store_app.command("verify", epilog="Example: cli store verify s3://bucket/stores/meld")
@user_errors
def store_verify_cmd(store: StoreArg) -> None:
    """Recompute every checksum and cross-check store.json, index, failures and shards.

    Exit code 1 when anything is wrong, with one line per problem.
    """
    from pipeline.commands.store import run_store_verify

    if not run_store_verify(store):
        raise typer.Exit(1)


@store_app.command("diff", epilog="Example: cli store diff stores/meld stores/meld-other")
@user_errors
def store_diff_cmd(a: StoreArg, b: StoreArg) -> None:
    """What differs in provenance between two stores; exit 1 when they are not comparable."""
    from pipeline.commands.store import print_store_diff

    if not print_store_diff(a, b):
        raise typer.Exit(1)


@store_app.command("merge", epilog=(
    "Example: cli store merge stores/meld-a stores/meld-b --out stores/meld"))
@user_errors
def store_merge_cmd(
    stores: Annotated[list[str], typer.Argument(help="Two or more stores of one configuration.")],
    out: Annotated[str, typer.Option(help="The merged store to create.")],
) -> None:
    """Combine stores with identical provenance (e.g. splits extracted by different teams)."""
    from pipeline.commands.store import run_store_merge

    run_store_merge(stores, out)


@store_app.command("upgrade", epilog="Example: cli store upgrade stores/meld")
@user_errors
def store_upgrade_cmd(store: StoreArg) -> None:
    """Rewrite an older store's store.json in the current format (atomically; shards kept)."""
    from pipeline.commands.store import run_store_upgrade

    run_store_upgrade(store)


@store_app.command("add-label-texts", epilog=(
    "Example: cli store add-label-texts stores/meld --device cuda"))
@user_errors
def store_add_label_texts_cmd(
    store: StoreArg,
    device: Annotated[str, typer.Option(help="cpu | cuda | cuda:N (a few dozen texts).")] = "cpu",
) -> None:
    """Embed the label texts (prompts and descriptions) with the store's own text backbone.

    CLEF's text prototypes (cli eval --protocol clef) are read from them; extraction adds them,
    this command adds them to a store extracted before (or replaces them).
    """
    from pipeline.commands.store import run_add_label_texts

    run_add_label_texts(store, device)


@app.command("eval", epilog=(
    "Example: cli eval --store stores/meld --run runs/conclugen --protocol linear --seeds 3"))
@user_errors
def eval_cmd(
    store: Annotated[str, typer.Option(help="The feature store the run was trained on.")],
    protocol: Annotated[str, typer.Option(
        help="linear | finetune | supervised (the paper's) | clef (text prototypes of the "
             "label names) | avce (valence/arousal regression on the store's continuous "
             "targets)")] = "linear",
    run: Annotated[Path | None, typer.Option(
        help="The pretraining run (not needed for supervised and avce; clef uses it for its "
             "zero-shot row). Default: none.")] = None,
    out: Annotated[Path | None, typer.Option(
        help="Output folder (default RUN/eval/<protocol>; required for supervised).")] = None,
    modalities: Annotated[str | None, typer.Option(
        help="Comma-separated modalities the classifier sees, e.g. video (default: all the "
             "run's; supervised: all the store has).")] = None,
    fusion: Annotated[str, typer.Option(help="concat | mean")] = "concat",
    preset: Annotated[str | None, typer.Option(
        help="paper | reference (the reference code's choices), optionally with cpu (small, "
             "fast): e.g. reference,cpu (default: paper).")] = None,
    set_: Annotated[list[str], typer.Option(
        "--set", help="KEY=VALUE override of manifests/evaluate.yaml; repeatable (default: "
                      "none).", metavar="KEY=VALUE")
    ] = [],  # noqa: B006 - Typer needs a literal default
    seeds: Annotated[int, typer.Option(help="Repeat with N seeds; mean and std.")] = 1,
    device: DeviceOpt = "auto",
    overwrite: Annotated[bool, typer.Option(
        "--overwrite", help="Replace an evaluation already in the output folder.")] = False,
) -> None:
    """Linear probe, fine-tuning, the supervised baseline (the paper's metrics), CLEF's text
    prototypes or AVCE's valence/arousal regression (RMSE, PCC, CCC, SAGR)."""
    from heads.console_tables import print_evaluation
    from heads.evaluation.run import run_eval

    result = run_eval(store, run=run, protocol=protocol, out=out,
                      modalities=split_list(modalities), fusion=fusion, preset=preset,
                      overrides=parse_sets(set_), seeds=seeds, device=device,
                      overwrite=overwrite)
    print_evaluation(console, result, protocol)


@app.command("study", epilog=(
    "Example: cli study --store stores/meld --store stores/caer --out study --quick"))
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
    preset: Annotated[str | None, typer.Option(
        help="paper (default) | reference (the reference code's choices), optionally with "
             "cpu (= --quick): e.g. reference,cpu.")] = None,
    seeds: Annotated[int, typer.Option(help="Seeds per evaluation.")] = 1,
    pretrain_seeds: Annotated[int, typer.Option(
        help="Pretraining runs per objective (seeds 0..N-1 from the config's); each row "
             "pools every pretraining x probe seed: mean +- std (n=classifiers).")] = 1,
    monitor: Annotated[bool, typer.Option(
        help="Every pretraining run logs the online k-NN accuracy on the first downstream "
             "store with classes (or --monitor-store).")] = False,
    monitor_store: Annotated[str | None, typer.Option(
        help="The labelled store the monitor uses (implies --monitor; default: the first "
             "downstream store with classes).")] = None,
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
    from heads.console_tables import print_study
    from heads.study.run import run_study

    folder = run_study(store, out, pretrain_store=pretrain_store, quick=quick, device=device,
                       seeds=seeds, systems=split_list(systems) or [],
                       pretrain_seeds=pretrain_seeds, monitor=monitor,
                       monitor_store=monitor_store, preset=preset)
    print_study(console, folder)


@app.command("predict", epilog=(
    "Example: cli predict clip.mp4 --run runs/conclugen --transcript 'Oh my God!'"))
@user_errors
def predict_cmd(
    video: Annotated[Path, typer.Argument(
        help="A video file (any container PyAV reads), or a clip's folder of frames (as "
             "AFEW-VA releases them).")],
    run: Annotated[Path | None, typer.Option(
        help="The pretraining run with an evaluated classifier (linear, finetune, "
             "supervised); not needed with --classifier. Default: none.")] = None,
    store: Annotated[str | None, typer.Option(
        help="The store the run was trained on (default: the one recorded).")] = None,
    transcript: Annotated[str | None, typer.Option(
        help="What is said in the clip (default: none, as the store treats a clip without "
             "transcript).")] = None,
    classifier: Annotated[Path | None, typer.Option(
        help="A classifier.pt of cli eval, of any protocol (clef: classes; avce: valence and "
             "arousal). Default RUN/eval/linear/classifier.pt.")] = None,
    device: DeviceOpt = "auto",
    weights_dir: WeightsDirOpt = None,
) -> None:
    """Class probabilities for a new video (an avce classifier: its valence and arousal), with
    the store's preprocessing and backbones."""
    from heads.console_tables import print_prediction
    from heads.evaluation.predict import run_predict
    from pipeline.backbones.download import use_weights_dir

    use_weights_dir(weights_dir)

    result = run_predict(video, run=run, store=store, transcript=transcript,
                         device=device, classifier=classifier)
    print_prediction(console, result, video)


weights_app = typer.Typer(no_args_is_help=True, epilog="Example: cli weights list",
                          help="The backbones' published checkpoints: list, fetch, verify.")
app.add_typer(weights_app, name="weights")


@weights_app.command("list", epilog="Example: cli weights list")
@user_errors
def weights_list_cmd() -> None:
    """Per backbone: the checkpoint's source, checksum, size, licence, and whether it is
    fetched (the weights folder: $CONCLUGEN_WEIGHTS_DIR or ~/.cache/conclugen/weights)."""
    from pipeline.commands.weights import print_weights_list

    print_weights_list()


@weights_app.command("fetch", epilog="Example: cli weights fetch --to /shared/weights")
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
    from pipeline.commands.weights import run_weights_fetch

    run_weights_fetch(backbone or None, to=to, every=every)


runs_app = typer.Typer(no_args_is_help=True,
                       help="The recorded runs, evaluations and studies (their run.json).",
                       epilog="Example: cli runs list runs/")
app.add_typer(runs_app, name="runs")


@runs_app.command("list", epilog="Example: cli runs list runs/")
@user_errors
def runs_list_cmd(
    folder: Annotated[Path, typer.Argument(help="A folder of runs, evaluations or studies.")],
) -> None:
    """Every recorded run, evaluation and study under FOLDER, oldest first: kind, objective or
    protocol, stores, start, wall-clock, headline metric."""
    from heads.console_tables import print_runs_list

    print_runs_list(console, folder)


@runs_app.command("diff", epilog="Example: cli runs diff runs/a/eval/linear runs/b/eval/linear")
@user_errors
def runs_diff_cmd(
    a: Annotated[Path, typer.Argument(help="A run, evaluation or study folder (or its run.json).")],
    b: Annotated[Path, typer.Argument(help="Another one.")],
) -> None:
    """What differs between two recorded runs: config, stores, software, device, metrics."""
    from heads.console_tables import print_runs_diff

    print_runs_diff(console, a, b)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
