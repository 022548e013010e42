"""The command line's help reads like its peers': an example under every command (one that
parses), every default said, plain metavars (``N``, ``TEXT``, ``KEY=VALUE``, none on a flag)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import typer.main
import yaml
from typer.testing import CliRunner

from cli import app
from pipeline.commands.help import commands_of

ROOT = Path(__file__).resolve().parent.parent
runner = CliRunner()
CLI = typer.main.get_command(app)
COMMANDS: dict[tuple[str, ...], Any] = {(): CLI, **commands_of(CLI)}


def _ids(path: tuple[str, ...]) -> str:
    return " ".join(path) or "cli"


def _options(command: Any) -> list[Any]:
    return [p for p in command.params if p.param_type_name == "option"]


def test_commands_are_found() -> None:
    for path in (("extract",), ("store",), ("store", "info"), ("weights", "fetch")):
        assert path in COMMANDS


@pytest.mark.parametrize("path", sorted(COMMANDS), ids=_ids)
def test_every_command_has_an_example_of_itself_that_parses(path: tuple[str, ...]) -> None:
    command = COMMANDS[path]
    example = re.fullmatch(r"Example: (.+)", command.epilog or "")
    assert example, f"cli {_ids(path)} has no 'Example: ...' epilog"
    words = shlex.split(example.group(1))
    assert words[0] == "cli"
    words, walked, target = words[1:], (), CLI
    while words and hasattr(target, "commands") and words[0] in target.commands:
        walked, target = (*walked, words[0]), target.commands[words[0]]
        words = words[1:]
    assert walked[:len(path)] == path and not hasattr(target, "commands"), example.group(1)
    if "--help" not in words:  # its options and arguments are the command's own
        target.make_context(" ".join(walked), words)


@pytest.mark.parametrize("path", sorted(COMMANDS), ids=_ids)
def test_every_option_says_its_default(path: tuple[str, ...]) -> None:
    silent = [p.opts[0] for p in _options(COMMANDS[path])
              if not (p.required or p.is_flag)
              and not (p.show_default and p.default not in (None, [], ()))
              and "default" not in (p.help or "").lower()]
    assert not silent, f"cli {_ids(path)}: options whose help gives no default: {silent}"


@pytest.mark.parametrize("path", sorted(COMMANDS), ids=_ids)
def test_help_renders_with_plain_metavars(path: tuple[str, ...]) -> None:
    result = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "Example: cli " in result.output
    assert not re.search(r"<(bool|str|int|float|path|list\[\w+\])>", result.output), \
        result.output  # neither an option nor an argument shows a Python type
    for param in _options(COMMANDS[path]):
        assert param.metavar == "" if param.is_flag else re.fullmatch(r"[A-Z=]+", param.metavar)


def test_key_value_options_show_key_value() -> None:
    pretrain = runner.invoke(app, ["pretrain", "--help"], env={"COLUMNS": "200"}).output
    assert re.search(r"--set\s+KEY=VALUE", pretrain)
    assert re.search(r"--epochs\s+N ", pretrain)
    assert re.search(r"--resume\s+--no-resume\s+Continue", pretrain)  # a flag: no metavar


def test_defaults_said_in_help_are_the_config_files() -> None:
    pretrain = yaml.safe_load((ROOT / "manifests" / "pretrain.yaml").read_text())["defaults"]
    extract = yaml.safe_load((ROOT / "manifests" / "extract.yaml").read_text())
    said = {p.name: p.help for p in _options(COMMANDS[("pretrain",)])}
    assert f"default: {pretrain['epochs']} from manifests/pretrain.yaml" in said["epochs"]
    assert f"default: {pretrain['seed']} from manifests/pretrain.yaml" in said["seed"]
    said = {p.name: p.help for p in _options(COMMANDS[("extract",)])}
    assert f"default: {extract['views']} from manifests/extract.yaml" in said["views"]
    assert f"default: {extract['detect_fps']} from manifests/extract.yaml" in said["detect_fps"]
