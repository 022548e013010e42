"""The paper's numbers as data: the shipped YAML loads strictly, agrees with an independent
transcription of the paper's tables where one is at hand, and holds the identities the paper's
metrics imply."""

from __future__ import annotations

import copy
import os
import re
from pathlib import Path

import pytest
import yaml

from heads.study.paper import FILE, paper_results, parse_paper_results
from pipeline.config import ConfigError

REPO = Path(__file__).resolve().parents[3]
#: PAPER-TABLES.md: a Markdown transcription of the paper's tables kept outside the package
#: (named by $CONCLUGEN_PAPER_TABLES, or in a ``shared/`` folder beside the checkout).
TABLES_MD = Path(os.environ.get("CONCLUGEN_PAPER_TABLES",
                                REPO.parent / "shared" / "PAPER-TABLES.md"))
MD_DATASETS = {"CMU-MOSEI": "mosei", "MOSEI": "mosei", "MELD": "meld", "CAER": "caer"}
MD_METRICS = {"Acc": "accuracy", "F1": "f1_weighted", "Prec": "precision_weighted",
              "Rec": "recall_weighted"}


def _raw() -> dict:
    return yaml.safe_load((REPO / "heads" / "study" / FILE).read_text())


def markdown_tables(text: str) -> dict[str, dict[str, dict[tuple[str, str], float]]]:
    """``## Table ...`` section title -> row label -> (dataset, metric) -> value.

    Handles both layouts of the transcription: one column per dataset (accuracy) and
    ``MOSEI Acc | F1 | Prec | Rec | MELD Acc | ...`` (the dataset named on its first column).
    """
    out: dict[str, dict[str, dict[tuple[str, str], float]]] = {}
    for section in re.split(r"^## ", text, flags=re.M)[1:]:
        title = section.splitlines()[0].strip()
        lines = [ln.strip() for ln in section.splitlines() if ln.strip().startswith("|")]
        if len(lines) < 3:
            continue
        header = [c.strip() for c in lines[0].strip("|").split("|")][1:]
        columns, dataset = [], None
        for cell in header:
            words = cell.split()
            if words[0] in MD_DATASETS:
                dataset = MD_DATASETS[words[0]]
                metric = MD_METRICS[words[1]] if len(words) > 1 else "accuracy"
            else:
                metric = MD_METRICS[cell]
            columns.append((dataset, metric))
        rows = {}
        for line in lines[2:]:
            cells = [c.strip() for c in line.strip("|").split("|")]
            rows[cells[0]] = {col: float(v) for col, v in zip(columns, cells[1:])}
        out[title] = rows
    return out


def test_the_shipped_file_loads_with_its_source() -> None:
    paper = paper_results()
    assert paper.source.title.startswith("Multi-Task Multi-Modal Self-Supervised Learning")
    assert paper.source.authors[0] == "Marah Halawa" and paper.source.year == 2024
    assert "CVPR" in paper.source.venue
    assert "Table 2" in paper.source.tables and "Tables 3-5" in paper.source.tables
    assert paper.datasets == {"mosei": "CMU-MOSEI", "meld": "MELD", "caer": "CAER"}
    assert [r.label for r in paper.tables["objectives"].rows] == [
        "ConCluGen", "ConClu", "ConGen", "Multi-Cont", "Instance-Cont", "Generative",
        "ConCluGen (vision only)", "Multi-Cont without text", "Multi-Cont without audio"]
    assert [r.label for r in paper.tables["baselines"].rows] == [
        "Supervised baseline", "ConCluGen (linear eval.)", "ConCluGen (finetuned)"]


def test_numbers_are_looked_up_by_row_dataset_and_metric() -> None:
    paper = paper_results()
    assert paper.number("objectives", "multi_cont_no_audio", "meld", "precision_weighted") == 58.2
    assert paper.number("objectives", "instance_cont", "mosei", "recall_weighted") == 77.1
    assert paper.number("baselines", "conclugen_finetuned", "caer", "accuracy") == 50.75
    assert paper.number("baselines", "supervised", "meld", "f1_weighted") is None  # not in Table 2
    assert paper.number("objectives", "conclugen", "synthetic", "accuracy") is None
    assert paper.number("objectives", "not_a_row", "meld", "accuracy") is None
    assert paper.column("mosei") == "CMU-MOSEI" and paper.column("voxceleb2") is None


def test_weighted_recall_is_accuracy_on_the_single_label_datasets() -> None:
    # Recall weighted by support is accuracy by definition for one label per clip: a check of
    # the transcription the paper's own numbers pass (CMU-MOSEI is multi-label: no identity).
    table = paper_results().tables["objectives"]
    for row in table.rows:
        for dataset in ("meld", "caer"):
            acc, _, _, rec = row.values[dataset]
            assert acc == rec, (row.label, dataset)


@pytest.mark.skipif(not TABLES_MD.is_file(), reason="no PAPER-TABLES.md transcription at hand")
def test_the_yaml_equals_the_markdown_transcription() -> None:
    tables = markdown_tables(TABLES_MD.read_text(encoding="utf-8"))
    paper = paper_results()
    by_source = {"Table 2": paper.tables["baselines"], "Tables 3-5": paper.tables["objectives"]}
    for source, table in by_source.items():
        title = next(t for t in tables if t.startswith(source))
        md = tables[title]
        assert list(md) == [r.label for r in table.rows], title
        for row in table.rows:
            ours = {(d, m): v for d, values in row.values.items()
                    for m, v in zip(table.metrics, values)}
            assert ours == md[row.label], (title, row.label)


def test_a_row_of_the_wrong_length_or_dataset_is_named() -> None:
    data = _raw()
    bad = copy.deepcopy(data)
    bad["tables"]["objectives"]["rows"][1]["values"]["meld"] = [58.0, 54.7, 57.6]
    with pytest.raises(ConfigError, match=r"objectives\.conclu\.meld: 3 values"):
        parse_paper_results(bad)
    bad = copy.deepcopy(data)
    bad["tables"]["baselines"]["rows"][0]["values"]["voxceleb2"] = [1.0]
    with pytest.raises(ConfigError, match=r"baselines\.supervised\.voxceleb2: not one of"):
        parse_paper_results(bad)
    bad = copy.deepcopy(data)
    bad["source"]["doi"] = "x"
    with pytest.raises(ConfigError, match="unknown key"):
        parse_paper_results(bad)
