"""`python -m bot` verbs, run as an operator would run them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import func
from sqlalchemy import select

from storage.db import Database
from storage.models import Invitation
from storage.models import Unit

ROOT = Path(__file__).resolve().parent.parent


def run(
    *args: str, env: dict[str, str] | None = None, cwd: Path = ROOT
) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items()
             if k not in {"BOT_TOKEN", "DATABASE_URL", "ADMIN_IDS", "BOT_TIMEZONE", "BOT_MODE"}}
    return subprocess.run(
        [sys.executable, "-m", "bot", *args], capture_output=True, text=True, timeout=120,
        env={**clean, **(env or {})}, cwd=cwd,
    )


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("BOT_TIMEZONE", "Mars/Olympus", "BOT_TIMEZONE: unknown time zone"),
        ("BOT_TIMEZONE", "Asia", "BOT_TIMEZONE: unknown time zone"),  # a folder of zones
        ("ADMIN_IDS", "12,abc", "ADMIN_IDS: must be comma-separated"),
        ("BOT_MODE", "carrier-pigeon", "BOT_MODE:"),
        ("DATABASE_URL", "mysql://x", "DATABASE_URL: must be a sqlite"),
        ("WEBHOOK_PORT", "99999", "WEBHOOK_PORT:"),
        ("DEFAULT_LANGUAGE", "fr", "DEFAULT_LANGUAGE: must be one of"),
    ],
)
def test_bad_configuration_is_one_line_and_exit_2(
    variable: str, value: str, expected: str, tmp_path: Path
) -> None:
    result = run("check", env={variable: value}, cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], result.stderr
    assert "Traceback" not in result.stderr


def test_webhook_mode_needs_its_settings(tmp_path: Path) -> None:
    result = run("check", env={"BOT_MODE": "webhook", "BOT_TOKEN": "1:abc"}, cwd=tmp_path)
    assert result.returncode == 2 and "WEBHOOK_URL" in result.stderr


def test_db_upgrade_then_check(tmp_path: Path) -> None:
    env = {"DATABASE_URL": f"sqlite:///{tmp_path / 'desk.db'}"}
    before = run("check", env=env, cwd=tmp_path)
    assert before.returncode == 1 and "pending migrations" in before.stdout
    assert run("db", "upgrade", env=env, cwd=tmp_path).returncode == 0
    after = run("check", env=env, cwd=tmp_path)
    assert after.returncode == 0, after.stdout + after.stderr
    assert "offline console" in after.stdout
    assert "0 waiting to be sent, 0 sent, 0 failed, 0 unreachable chat(s)" in after.stdout


def test_check_reports_an_unreachable_database(tmp_path: Path) -> None:
    env = {"DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"}
    result = run("check", env=env, cwd=tmp_path)
    assert result.returncode == 1
    assert "database" in result.stdout and "FAIL" in result.stdout
    assert "Traceback" not in result.stderr


async def test_invite_from_the_shell(database_url: str, db: Database, tmp_path: Path) -> None:
    async with db.session() as session:
        session.add(Unit(code="yn", name="云南省公安厅", short_name="云南"))
    result = run("invite", "云南", "值班员", "--hours", "12",
                 env={"DATABASE_URL": database_url}, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "duty_officer at 云南省公安厅, valid 12 h" in result.stdout
    assert "/start " in result.stdout
    refused = run("invite", "火星", env={"DATABASE_URL": database_url}, cwd=tmp_path)
    assert refused.returncode == 1 and "exactly one unit" in refused.stderr


async def test_invite_hours_out_of_range_are_refused(
    database_url: str, db: Database, tmp_path: Path
) -> None:
    async with db.session() as session:
        session.add(Unit(code="yn", name="云南省公安厅", short_name="云南"))
    for hours in ("0", "-1", "2161", str(10**30)):
        result = run("invite", "云南", "--hours", hours,
                     env={"DATABASE_URL": database_url}, cwd=tmp_path)
        assert result.returncode == 1, (hours, result.stdout, result.stderr)
        assert "--hours must be from 1 to 2160 (90 days)" in result.stderr
        assert "Traceback" not in result.stderr and "/start" not in result.stdout
    async with db.session() as session:
        assert not (await session.execute(select(func.count(Invitation.id)))).scalar_one()


async def test_import_export_verbs(database_url: str, db: Database, tmp_path: Path) -> None:
    env = {"DATABASE_URL": database_url}
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "units:\n  - {code: sc, name: 四川省公安厅, short_name: 四川}\n"
        "liaisons:\n  - {unit: 四川省公安厅X, name: 张三, phones: ['+86 100 0000 0001']}\n"
        "  - {unit: 四川, name: '', role: chief}\n",
        encoding="utf-8",
    )
    refused = run("import", str(bad), env={**env, "DEFAULT_LANGUAGE": "en"}, cwd=tmp_path)
    assert refused.returncode == 1
    assert "nothing was changed" in refused.stderr
    assert f"{bad}, line 4: liaison #1, field unit: no unit named 四川省公安厅X" in refused.stderr
    assert refused.stderr.count("line 5: liaison #2") >= 2  # every problem, each with its place
    async with db.session() as session:
        assert (await session.execute(select(func.count(Unit.id)))).scalar_one() == 0

    imported = run("import", str(ROOT / "data" / "sample.yaml"), env=env, cwd=tmp_path)
    assert imported.returncode == 0, imported.stderr
    exported = tmp_path / "export.yaml"
    assert run("export", str(exported), env=env, cwd=tmp_path).returncode == 0
    again = run("import", str(exported), env=env, cwd=tmp_path)
    assert again.returncode == 0 and " 0 created, 0 updated" in again.stdout
