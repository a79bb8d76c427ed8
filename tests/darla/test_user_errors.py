"""One base class for the failures a user can act on: the command line catches it once."""

from __future__ import annotations

import pytest

import darla.cli as cli
from darla.cli import UsageError, main
from darla.config import ConfigError
from darla.errors import UserError
from darla.runs import RunDirError
from darla.sweep import SweepError


def test_user_errors_share_one_base_and_keep_their_status_and_standard_base():
    statuses = {c: (c.exit_code, c.label) for c in (ConfigError, UsageError, RunDirError, SweepError)}
    assert statuses == {
        ConfigError: (2, "config error"), UsageError: (2, "error"), RunDirError: (1, "error"), SweepError: (1, "error"),
    }
    assert all(issubclass(c, UserError) for c in statuses)
    # code that catches the standard classes still catches them
    assert issubclass(ConfigError, ValueError) and issubclass(UsageError, ValueError)
    assert issubclass(RunDirError, RuntimeError) and issubclass(SweepError, RuntimeError)


@pytest.mark.parametrize(("error", "status", "line"), [
    (ConfigError("c.yaml", "vision.beta", "must be > 0"), 2, "darla: config error: c.yaml: vision.beta: must be > 0"),
    (UsageError("--n: too many"), 2, "darla: error: --n: too many"),
    (RunDirError("runs/x is locked"), 1, "darla: error: runs/x is locked"),
    (SweepError("2 of 3 runs did not complete"), 1, "darla: error: 2 of 3 runs did not complete"),
])
def test_a_user_error_from_any_command_is_one_line_and_its_status(error, status, line, monkeypatch, capsys):
    def fail(_args):
        raise error

    monkeypatch.setattr(cli, "_cmd_envs", fail)
    assert main(["envs"]) == status
    assert capsys.readouterr().err == line + "\n"


def test_an_unexpected_error_keeps_its_traceback(monkeypatch):
    def fail(_args):
        raise RuntimeError("a bug")

    monkeypatch.setattr(cli, "_cmd_envs", fail)
    with pytest.raises(RuntimeError, match="a bug"):
        main(["envs"])


@pytest.mark.parametrize("group", [[], ["vision"], ["scan"], ["agent"], ["transfer"]])
def test_a_command_group_without_its_subcommand_prints_its_help(group, capsys):
    assert main(group) == 0
    assert capsys.readouterr().out.startswith(f"usage: darla {' '.join(group)}".rstrip() + " [-h]")
