"""``cli store``: what the store commands print (info, verify, diff, merge, upgrade, label
texts). Each returns whether the command succeeded where its exit code says so."""

from __future__ import annotations

from rich.markup import escape
from rich.table import Table

from pipeline.commands.console import console, short
from pipeline.datasets.transcripts import describe_transcripts
from pipeline.store import ops
from pipeline.store.manifest import FORMAT
from pipeline.store.merge import merge_stores


def print_store_info(store: str) -> None:
    """Dataset, counts per split and label, modalities and how they were made, failures."""
    info = ops.store_info(store)
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
            f"{k}={short(v, 40)}" for k, v in m.preprocessing.items())), highlight=False)
    if info.failures_by_reason:
        console.print("failures by reason: " + ", ".join(
            f"{r} {n}" for r, n in info.failures_by_reason.items()))
    console.print("software: " + ", ".join(f"{k} {v}" for k, v in info.software.items()))


def run_store_verify(store: str) -> bool:
    """Verify every checksum, print the notes and problems; True when there is none."""
    report = ops.verify_store(store)
    for note in report.notes:
        console.print(f"[dim]note: {note}[/]")
    if report.problems:
        for problem in report.problems:
            console.print(f"[red]PROBLEM[/] {escape(str(problem))}")
        console.print(f"[bold red]{len(report.problems)} problem(s)[/] in {report.url}")
        return False
    console.print(f"[bold green]OK[/]: {report.url}: {report.shards} shards, {report.rows} rows, "
                  f"{report.bytes_hashed / 1e6:.1f} MB hashed")
    return True


def print_store_diff(a: str, b: str) -> bool:
    """Print what differs between two stores; True when they are comparable."""
    diff = ops.diff_stores(a, b)
    blocking = {d.path for d in diff.blocking}
    table = Table("field", "A", "B", title=f"A = {diff.a}\nB = {diff.b}")
    for d in diff.differences:
        style = "red" if d.path in blocking else None
        table.add_row(d.path, short(d.a), short(d.b), style=style)
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
    return diff.comparable


def run_store_merge(stores: list[str], out: str) -> None:
    """Merge ``stores`` into ``out`` and say what was merged."""
    result = merge_stores(stores, out)
    console.print(f"[bold green]merged[/] {len(result.sources)} stores into {result.url}: "
                  f"store_id {result.store_id[:12]}, {result.shards} shards, {result.samples} "
                  f"samples, {result.failures} failures ({result.dropped_failures} failure rows "
                  "dropped: extracted by another source)")


def run_store_upgrade(store: str) -> None:
    """Rewrite an older store's store.json in the current format and say what changed."""
    result = ops.upgrade_store(store)
    if result.changed:
        console.print(f"[bold green]upgraded[/] {result.url}: {result.from_format} -> "
                      f"{result.to_format}, store_id {result.store_id[:12]} kept")
    else:
        console.print(f"{result.url} is already {result.to_format}: nothing to do")


def run_add_label_texts(store: str, device: str) -> None:
    """Embed the store's label texts with its own text backbone and say with what."""
    from pipeline.label_texts import add_label_texts  # here: it imports the backbones

    manifest = add_label_texts(store, device=device)
    info = manifest.label_texts
    assert info is not None
    console.print(f"[bold green]added[/] {info.rows} label texts to {store}, embedded by "
                  f"{info.backbone} (weights {str(info.weights_sha256)[:16]}...)")
