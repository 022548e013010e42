"""``cli transcribe``: speech recognition over a dataset's clips, with progress and a summary."""

from __future__ import annotations

from pathlib import Path

from pipeline.asr import AsrSettings
from pipeline.cluster import ClusterOptions
from pipeline.commands.console import console
from pipeline.commands.logs import library_log
from pipeline.progress import Progress
from pipeline.transcribe import run_transcribe


def run_transcribe_cli(dataset: str, root: Path, *, out: Path | None, settings: AsrSettings,
                       annotations: Path | None, limit: int | None, shard_size: int,
                       device: str, cluster: ClusterOptions) -> None:
    """Transcribe with progress (a bar in a terminal, log lines elsewhere) and a summary."""
    bars: list[Progress] = []

    def on_plan(total: int, done: int) -> None:
        bars.append(Progress("transcribe", total, "clips", initial=done, failed=0))

    def on_progress(done: int, failed: int) -> None:
        bars[0].update(done, failed=failed)

    # Beside the sidecar (the default one is under the dataset's root).
    log_file = (out or root / "transcripts.csv").absolute().with_suffix(".transcribe.log")
    try:
        with library_log(log_file):
            result = run_transcribe(dataset, root, out=out, settings=settings,
                                    annotations=annotations, limit=limit,
                                    shard_size=shard_size, device=device, cluster=cluster,
                                    on_plan=on_plan, on_progress=on_progress)
    finally:
        for bar in bars:
            bar.close()
    failed = ", ".join(f"{r} {n}" for r, n in sorted(result.failed.items())) or "none"
    console.print(f"[bold green]transcripts written[/]: {result.sidecar} ({result.clips} clips: "
                  f"{result.transcribed} transcribed, {result.empty} of them empty; without "
                  f"decodable speech: {failed}); provenance in {result.provenance_file.name}" + (
                      f"; Dask's messages: {log_file}" if log_file.is_file() else ""))
