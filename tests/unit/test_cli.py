"""The command line's manners: every option explained, no summary cut, errors that say
what to do (run in-process with click's runner; tests/e2e runs the real command)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from allocation.adapters.sql import orm
from allocation.entrypoints.cli.commands import main
from tests.unit.test_config import MALFORMED

# click cuts a command's summary in its group's listing at this many characters.
SUMMARY_LIMIT = 45


def commands(group: click.Group, prefix: str = "") -> Iterator[tuple[str, click.Command]]:
    for name, command in group.commands.items():
        yield f"{prefix}{name}", command
        if isinstance(command, click.Group):
            yield from commands(command, f"{prefix}{name} ")


def test_every_option_has_help_text() -> None:
    missing = [
        f"{name} {option.opts[0]}"
        for name, command in commands(main)
        for option in command.params
        if isinstance(option, click.Option) and not option.help
    ]
    assert missing == []


def test_no_summary_is_cut() -> None:
    cut = [
        name
        for name, command in commands(main)
        if command.get_short_help_str(limit=SUMMARY_LIMIT).endswith("...")
    ]
    assert cut == []


@pytest.fixture
def elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A directory with no database in it, as the working directory. The commands
    map the domain classes in this process: unmapped again after, for the fakes."""
    monkeypatch.chdir(tmp_path)
    yield tmp_path
    orm.clear_mappers()


@pytest.mark.parametrize(
    "args", [["outbox"], ["dead-letters", "list"], ["rebuild-views"], ["relay"]]
)
def test_an_unmigrated_database_says_run_migrate_and_is_not_created(
    elsewhere: Path, args: list[str]
) -> None:
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1
    assert result.output == (
        "Error: the database schema is not migrated (no database file"
        f" {elsewhere / 'allocation.sqlite3'}, at sqlite:///allocation.sqlite3):"
        " run `allocation migrate`\n"
    )
    assert list(elsewhere.iterdir()) == []


def test_an_empty_list_says_so(elsewhere: Path) -> None:
    runner = CliRunner()
    assert runner.invoke(main, ["migrate"]).exit_code == 0
    listed = runner.invoke(main, ["dead-letters", "list"])
    assert (listed.exit_code, listed.output) == (0, "no dead letters (--all: re-driven ones too)\n")
    assert runner.invoke(main, ["dead-letters", "list", "--all"]).output == "no dead letters\n"
    assert runner.invoke(main, ["dead-letters", "list", "--json"]).output == ""


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_a_malformed_setting_is_one_line_and_exit_2(name: str, elsewhere: Path) -> None:
    value, problem = MALFORMED[name]
    result = CliRunner().invoke(main, ["outbox"], env={name: value})
    assert result.exit_code == 2
    assert result.output.startswith(f"Error: {name}: ") and problem in result.output
    assert result.output.count("\n") == 1 and "Traceback" not in result.output
