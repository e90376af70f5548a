"""The offline console: a person chats with the real bot on the sample data."""

from __future__ import annotations

import io

from bot.config import load_settings
from bot.console import run_console
from bot.testing_db import TestDatabases
from storage.dataio import import_file
from storage.db import Database

SCRIPT = """/start
:users
:user 1
/help
/lang
:press 3
/help
:chats
:chat 1
/help
:chat 0
:press 99
:quit
"""


async def test_console_session_on_the_sample_data(
    test_databases: TestDatabases, tmp_path
) -> None:
    url = await test_databases.sqlite_url(tmp_path)
    db = Database(url)
    report = await import_file(db, "data/sample.yaml")
    await db.dispose()
    assert not report.problems
    out = io.StringIO()

    code = await run_console(load_settings(_env_file=None, database_url=url),
                             stdin=io.StringIO(SCRIPT), stdout=out)

    text = out.getvalue()
    assert code == 0
    assert "offline console" in text
    assert "   1  周立新  admin  甘肃" in text  # the cast, administrators first
    assert "you are now" in text
    assert "/invite" in text  # the administrator's help lists administration
    assert "[3 English]" in text and "Switched to English." in text
    assert "Liaison Desk · commands" in text
    assert "指挥中心值班室" in text  # the duty rooms are chats one can switch to
    assert "now in" in text
