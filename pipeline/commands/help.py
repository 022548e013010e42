"""The command line's help, plain as its peers': ``N``, ``TEXT``, ``PATH`` for values, nothing
for a flag (not ``<int>``, ``<list[str]>``, ``<bool>``), and an example under every command."""

from __future__ import annotations

from typing import Any

from typer.core import TyperGroup

#: An option's Python type (a list option's: its items') -> the metavar it shows when its
#: declaration gives none.
METAVARS = {"int": "N", "float": "NUMBER", "Path": "PATH", "str": "TEXT"}


def plain_metavar(param: Any) -> str | None:
    """The metavar ``param`` should show; None to keep what it shows (an argument's name, or a
    metavar its declaration gave)."""
    if param.metavar is not None:
        return None
    if param.param_type_name == "argument":
        return str(param.name).upper()
    if param.is_flag:
        return ""  # a flag takes no value
    bare = param.bare_type().removeprefix("list[").removesuffix("]")
    return METAVARS.get(bare, bare.upper())


def commands_of(group: Any, path: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
    """Every command under ``group`` (and its sub-groups), by its path of names."""
    found = {}
    for name, command in group.commands.items():
        found[(*path, name)] = command
        if hasattr(command, "commands"):
            found.update(commands_of(command, (*path, name)))
    return found


def _no_type(ctx: Any) -> None:
    """An argument's type column: none (its name says what it is; not ``<list[str]>``)."""
    return None


class PlainHelpGroup(TyperGroup):
    """A Typer group whose commands show plain metavars (see :func:`plain_metavar`)."""

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        for command in [self, *commands_of(self).values()]:
            # --help is made once per command, on first use, and kept: made here, it shows no
            # metavar either.
            help_option = command.get_help_option(command.context_class(command))
            for param in [*command.params, *([help_option] if help_option else [])]:
                metavar = plain_metavar(param)
                if metavar is not None:
                    param.metavar = metavar
                if param.param_type_name == "argument":
                    # Typer renders an argument's type from its annotation whatever its metavar
                    param.display_type_rich = _no_type
