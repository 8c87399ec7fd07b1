"""The griddesk command on a fresh clone: any command that uses the database opens a migrated
one with the example community, as `serve` does, and the migration says one line when it
migrates and nothing otherwise (alembic's own steps with --verbose)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from alembic import command

from bot.cli import main
from bot.settings import Settings
from storage import db

GRIDDESK = Path(sys.executable).parent / "griddesk"


def griddesk(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The command as an operator runs it in `cwd`, with no setting in the environment."""
    settings = {name.upper() for name in Settings.model_fields}
    env = {k: v for k, v in os.environ.items() if k.upper() not in settings}
    return subprocess.run([str(GRIDDESK), *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=180, check=False)


def migration_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "migrat" in line or "alembic" in line]


def test_commands_on_a_fresh_clone_open_the_example_community_and_say_little(tmp_path: Path) -> None:
    signs = griddesk(tmp_path, "qr", "--out", "signs")
    assert signs.returncode == 0, signs.stderr
    assert "Traceback" not in signs.stderr and "no such table" not in signs.stderr
    assert "grid sign(s) written to signs" in signs.stdout
    assert sorted(p.name for p in (tmp_path / "signs").iterdir())[:1] == ["ZN-B01.png"]
    # One line for the migration, naming where it went; none of alembic's own.
    migrated = migration_lines(signs.stderr)
    assert len(migrated) == 1 and "database migrated from an empty database to" in migrated[0], signs.stderr
    assert (tmp_path / "var" / "griddesk.db").exists()

    # The next command finds the database as it was left: nothing migrated, nothing said.
    report = griddesk(tmp_path, "figures", "--by", "community")
    assert report.returncode == 0, report.stderr
    assert "中南社区" in report.stdout
    assert migration_lines(report.stderr) == [], report.stderr

    # --verbose shows alembic's steps (here: checking an up-to-date database).
    link = griddesk(tmp_path / "signs", "--verbose", "webchat", "link", "--person", "zhang_li")
    assert link.returncode == 0, link.stderr
    assert "/login/" in link.stdout
    assert any("alembic" in line for line in link.stderr.splitlines()), link.stderr


def test_a_migration_is_one_line_from_which_revision_to_which(tmp_path: Path,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    command.upgrade(db.alembic_config(url), "0009")
    caplog.clear()
    caplog.set_level(logging.INFO)
    db.upgrade(url)
    head = db.revision(url)
    assert head is not None and head > "0009"
    assert [r.getMessage() for r in caplog.records] == [f"database migrated from 0009 to {head}"]
    caplog.clear()
    db.upgrade(url)
    assert caplog.records == []


def test_a_configured_database_without_a_community_says_what_to_run_first(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'configured.db'}")
    caplog.set_level(logging.INFO)
    assert main(["figures"]) == 2
    assert "no community loaded" in capsys.readouterr().err
    said = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert said == ["no community in the database yet: run `griddesk registry load FILE` first"]
