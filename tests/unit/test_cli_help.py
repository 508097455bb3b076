"""Every command's help: each option explained, its default shown, no type noise on flags."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from fleet.cli.main import app


def _commands(command: Any, path: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], Any]]:
    yield path, command
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        yield from _commands(sub, (*path, name))


COMMANDS = list(_commands(typer.main.get_command(app), ()))


def test_the_walk_finds_the_commands_on_call_uses() -> None:
    found = {" ".join(path) for path, _ in COMMANDS}
    assert {"", "job show", "host drain", "vm migrate", "vm policy", "events"} <= found


@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=lambda v: " ".join(v) or "fleet"
                         if isinstance(v, tuple) else "")
def test_every_option_is_explained_with_its_default(path: tuple[str, ...],
                                                    command: Any) -> None:
    shown = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "100"})
    assert shown.exit_code == 0, shown.output
    assert "<bool>" not in shown.output and "[default: False]" not in shown.output
    ctx = command.make_context(" ".join(("fleet", *path)), [], resilient_parsing=True)
    for param in command.params:
        if param.param_type_name != "option":
            continue
        assert (param.help or "").strip(), f"{' '.join(path)} {param.opts[0]} has no help"
        record = param.get_help_record(ctx)
        assert record is not None and "<bool>" not in record[0]
        off_flag = param.is_flag and not param.default
        if param.default is not None and not off_flag and not param.hidden:
            assert "default" in record[1], f"{' '.join(path)} {param.opts[0]}: no default"
