"""The offline console: a person chats with the real bot on the sample data, acts as any
user in any duty room, and no line typed at it ends the session."""

from __future__ import annotations

import io
import os
import re
import signal
import subprocess
import sys
from datetime import date
from datetime import datetime
from datetime import timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import select

from bot.config import load_settings
from bot.console import Console
from bot.console import ConsoleState
from bot.console import Person
from bot.console import run_console
from bot.emulator import BotApiEmulator
from storage.dataio import import_file
from storage.db import Database
from storage.models import Roster
from tools.testing_db import TestDatabases

ROOT = Path(__file__).resolve().parent.parent
PROMPT = re.compile(r"\[[^\]\n]+ @ [^\]\n]+\] > ")


def zhang_wei_and_ma_jianjun_days() -> tuple[date, date]:
    """The next shift of 张伟 on 甘肃's daily roster that has not started (the console runs on
    the real clock), and 马建军's the day after: the sample's six officers take one day each
    from 2026-11-02, 张伟 first, 马建军 second."""
    day = datetime.now(ZoneInfo("Asia/Shanghai")).date() + timedelta(days=1)
    while (day - date(2026, 11, 2)).days % 6:
        day += timedelta(days=1)
    return day, day + timedelta(days=1)


async def handovers_away_from_now(db: Database, margin: timedelta = timedelta(hours=2),
                                  now: datetime | None = None) -> None:
    """The console runs on the real clock: a roster whose shift changed minutes ago has
    its late handover brief sent at start-up, into the room a test then reads. Every
    roster's shift starts (and so their reminders a day and an hour before) move by the
    same whole hours until none is within `margin` of now; days and members stay."""
    now = now or datetime.now(ZoneInfo("UTC"))

    def near(starts: list[str], zone: str, hours: int) -> bool:
        local = now.astimezone(ZoneInfo(zone))
        minutes = local.hour * 60 + local.minute
        for start in starts:
            hour, minute = map(int, start.split(":"))
            for lead in (0, 60):  # the handover, and its reminder an hour before
                due = ((hour + hours) % 24) * 60 + minute - lead
                if min((due - minutes) % 1440, (minutes - due) % 1440) < margin / timedelta(
                        minutes=1):
                    return True
        return False

    async with db.session() as session:
        rosters = list((await session.execute(select(Roster))).scalars())
        hours = next(h for h in range(24)
                     if not any(near(r.shift_starts, r.timezone, h) for r in rosters))
        for roster in rosters:
            roster.shift_starts = sorted(
                f"{(int(s[:2]) + hours) % 24:02d}{s[2:]}" for s in roster.shift_starts)


async def session(test_databases: TestDatabases, tmp_path: Path, lines: list[str]) -> list[str]:
    """Type the lines at a console on the sample data; returns what answered each line
    (the opening banner first)."""
    url = await test_databases.sqlite_url(tmp_path)
    db = Database(url)
    report = await import_file(db, "data/sample.yaml")
    await handovers_away_from_now(db)
    await db.dispose()
    assert not report.problems
    out = io.StringIO()
    code = await run_console(load_settings(_env_file=None, database_url=url),
                             stdin=io.StringIO("".join(f"{line}\n" for line in lines)),
                             stdout=out)
    assert code == 0
    answers = PROMPT.split(out.getvalue())
    # A prompt for each line (the session went on), and one more at the end of the input
    # (Ctrl-D) unless the last line was :quit.
    ended = lines[-1].lower() in {":quit", ":q", ":exit"}
    assert len(answers) == len(lines) + (1 if ended else 2), out.getvalue()
    return answers


async def test_console_session_on_the_sample_data(
    test_databases: TestDatabases, tmp_path: Path
) -> None:
    answers = await session(test_databases, tmp_path, [
        "/start", ":users", ":user 1", "/help", "/lang", ":press 3", "/help", ":chats",
        ":chat 1", "/help", ":chat 0", ":quit",
    ])
    text = "".join(answers)
    assert "offline console" in answers[0]
    assert "   1  周立新  admin  甘肃" in answers[2]  # the cast, administrators first
    assert "you are now 周立新" in answers[3]
    assert "/invite" in answers[4]  # the administrator's help lists administration
    assert "[3 English]" in answers[5] and "Switched to English." in answers[6]
    assert "Liaison Desk · commands" in answers[7]
    assert "指挥中心值班室" in answers[8]  # the duty rooms are chats one can switch to
    assert "now in 甘肃省公安厅指挥中心值班室" in answers[9]
    assert "Traceback" not in text


LONG = "长" * 5000


async def test_every_console_command_with_good_and_bad_arguments(
    test_databases: TestDatabases, tmp_path: Path
) -> None:
    lines = [
        ":help", ":", "", "   ", ":foo", ":FOO bar", ":users", ":users extra",
        ":user", ":user 999", ":user 0", ":user x", ":user -1", ":user 1 2", ":user ９",
        ":user " + "9" * 400, ":user 4",
        ":chats", ":chat", ":chat 99", ":chat -1", ":chat x", ":chat 3",
        ":show", ":show 0", ":show x", ":show 1 2", ":show 999999999",
        ":press", ":press x", ":press 99", ":press 0",
        ":chat 0", "四川 刑侦", ":show 1", ":press 98", ":press 1", ":press 7",
        LONG, "长" * 4096, "::)", ":chat 3", "/oncall", ":user 2", ":show 2", ":QUIT",
    ]
    answers = await session(test_databases, tmp_path, lines)
    said = dict(zip(lines, answers[1:], strict=False))
    assert "console commands:" in said[":help"] and "console commands:" in said[":"]
    assert said[""] == said["   "] == ""  # an empty line does nothing
    assert "no console command :foo; :help lists them" in said[":foo"]
    assert "no console command :foo" in said[":FOO bar"]
    assert "  13  杨丽华  officer  昆明" in said[":users"] == said[":users extra"]
    assert "usage: :user N" in said[":user"] and "usage: :user N" in said[":user 1 2"]
    for bad in (":user 999", ":user 0", ":user x", ":user -1", ":user ９"):
        assert "is not one of the users: type a number from 1 to 13" in said[bad], bad
    assert "is not one of the users" in said[":user " + "9" * 400]
    assert "you are now 李静, in your private chat" in said[":user 4"]
    assert "  10  江苏省公安厅指挥中心值班室" in said[":chats"]
    assert "usage: :chat N" in said[":chat"]
    for bad in (":chat 99", ":chat -1", ":chat x"):
        assert "is not one of the chats: type a number from 0 to 10" in said[bad], bad
    assert "now in 四川省公安厅指挥中心值班室" in said[":chat 3"]
    assert "no message of the bot in 四川省公安厅指挥中心值班室 yet" in said[":show"]
    assert "is not one of the counts of messages" in said[":show 0"]
    assert "is not one of the counts of messages" in said[":show x"]
    assert "is not one of the counts of messages" in said[":show 999999999"]
    assert "usage: :show [N]" in said[":show 1 2"]
    assert "usage: :press N" in said[":press"]
    for bad in (":press x", ":press 99", ":press 0"):
        assert "no button to press: :show shows this chat's messages with theirs" in said[bad]
    assert "now in private chat" in said[":chat 0"]
    assert "[1 " in said["四川 刑侦"] and "[1 " in said[":show 1"]  # numbered buttons
    assert "'98' is not one of the buttons: type a number from 1 to " in said[":press 98"]
    # The card's numbers come first, as copy buttons; the seventh button is the bot's.
    assert said[":press 1"] == "  (copied: +86 100 0000 0148)\n"
    assert "(pressed " in said[":press 7"] and "bot (edited):" in said[":press 7"]
    assert "Telegram takes at most 4096 characters in a message; this one has 5000" in said[LONG]
    assert "bot:" in said["长" * 4096]  # at the limit, it is sent
    assert "「:)」" in said["::)"]  # a doubled colon sends the text
    assert "bot:" in said["/oncall"]  # the room's own answer
    assert "you are now 马建军, still in 四川省公安厅指挥中心值班室" in said[":user 2"]
    assert said[":show 2"] == said["/oncall"]  # what the room shows, to anyone in it
    assert "Traceback" not in "".join(answers)


async def test_a_link_button_is_not_pressed(emulator: BotApiEmulator) -> None:
    """The console presses only the bot's buttons; a link is said to be one."""
    person = Person(910000001, "周立新", "admin", "甘肃")
    out = io.StringIO()
    console = Console(emulator, ConsoleState([person], [], person, person.telegram_id), out)
    console.display([({"message_id": 7, "chat": {"id": person.telegram_id}, "text": "会议",
                       "reply_markup": {"inline_keyboard": [[
                           {"text": "🎥 视频会议", "url": "https://meet.example/1"}]]}},
                      False)])
    await console.handle(":press 1")
    assert "[1 🎥 视频会议]" in out.getvalue()
    assert "[🎥 视频会议] opens a link, not a button of the bot" in out.getvalue()
    assert emulator.pending_updates == 0


async def test_every_readme_flow_in_the_console_alone(
    test_databases: TestDatabases, tmp_path: Path
) -> None:
    """A notice acknowledged in a duty room, a request accepted there, a swap confirmed by
    the other officer: each person's part typed at the console."""
    his_day, their_day = zhang_wei_and_ma_jianjun_days()
    lines = [
        # 马建军, coordinator, sends a notice to every duty room.
        ":user 2", "/notice 预警 紧急 全部 今晚至明晨有强降雨，请加强备勤", ":press 1",
        # 李静 sees it in 四川's room and acknowledges it.
        ":user 4", ":chat 3", ":show", ":press 1",
        # 李静 asks 甘肃 for help; 张伟 accepts it in 甘肃's room.
        ":chat 0", "/request 甘肃 治安管控互动 特急 协查涉枪线索", ":press 1",
        ":user 7", ":chat 1", ":show 1", ":press 1",
        # 张伟 asks 马建军 to trade shifts; 马建军 agrees in the same room.
        ":chat 0", f"/swap {his_day} 马建军 {their_day}", ":chat 1", ":show 1", ":user 2",
        ":press 1", ":user 7", ":show 1",
    ]
    answers = await session(test_databases, tmp_path, lines)
    said = answers[1:]

    assert "[1 📤 发送]" in said[1]
    assert "通报 TB-2026-000001 已保存，正在发往 10 个值班室" in said[2]
    assert "new message(s) in 四川省公安厅指挥中心值班室; :chat 3 then :show" in said[2]
    assert "now in 四川省公安厅指挥中心值班室; 1 message(s) of the bot here" in said[4]
    assert "今晚至明晨有强降雨，请加强备勤" in said[5] and "[1 ✅ 收到]" in said[5]
    assert "(bot pop-up) ✅ 已确认收到 TB-2026-000001" in said[6]
    assert re.search(r"✅ 李静 已于 \d\d-\d\d \d\d:\d\d 确认收到", said[6])

    assert "[1 ✅ 提交]" in said[8]
    assert "XZ-2026-000001 → 甘肃省公安厅" in said[9]
    assert "new message(s) in 甘肃省公安厅指挥中心值班室; :chat 1 then :show" in said[9]
    assert "you are now 张伟, in your private chat" in said[10]
    assert "协作请求 XZ-2026-000001" in said[12] and "[1 ✅ 接收]" in said[12]
    assert "已接收 XZ-2026-000001" in said[13] and "状态：✅已接收（张伟" in said[13]
    assert "new message(s) in private chat of 李静; :user 4 then :show" in said[13]

    assert f"已发起换班申请：张伟（{his_day.month}月{his_day.day}日" in said[15]
    assert "换班申请" in said[17] and "[1 ✅ 同意]" in said[17]
    assert "you are now 马建军, still in 甘肃省公安厅指挥中心值班室" in said[18]
    assert "换班已确认（马建军）" in said[19]
    assert "换班已确认（马建军）" in said[21] and "[1 " not in said[21]  # no button left
    assert "Traceback" not in "".join(answers)


def test_bytes_that_are_not_utf8_are_still_a_line(tmp_path: Path) -> None:
    """`python -m bot console` as a person starts it, fed a line that is not UTF-8."""
    env = {k: v for k, v in os.environ.items() if k not in {"BOT_TOKEN", "DATABASE_URL"}}
    result = subprocess.run(
        [sys.executable, "-m", "bot", "console"], capture_output=True, timeout=120, cwd=ROOT,
        input=b"\xff\xfe \xe5\x9b\x9b\xe5\xb7\x9d\n:quit\n",
        env={**env, "DATABASE_URL": f"sqlite:///{tmp_path / 'console.db'}"})
    out = result.stdout.decode()
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    assert "四川" in out and out.count("bot:") == 1  # the line was sent and answered
    assert "Traceback" not in result.stderr.decode()


def test_ctrl_c_leaves_at_once(tmp_path: Path) -> None:
    """Ctrl-C while the console waits for a line ends it (exit 130), without waiting for
    Enter and without a traceback."""
    env = {k: v for k, v in os.environ.items() if k not in {"BOT_TOKEN", "DATABASE_URL"}}
    console = subprocess.Popen(
        [sys.executable, "-m", "bot", "console"], cwd=ROOT, stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env={**env, "DATABASE_URL": f"sqlite:///{tmp_path / 'console.db'}"})
    try:
        assert console.stdout is not None
        banner = b""
        while b"] > " not in banner:  # the first prompt: it waits for a line
            chunk = console.stdout.read1(4096)
            assert chunk, console.stderr.read().decode()[-2000:] if console.stderr else ""
            banner += chunk
        console.send_signal(signal.SIGINT)
        code = console.wait(timeout=20)
    finally:
        if console.poll() is None:
            console.kill()
    assert code == 130
    assert console.stderr is not None and b"Traceback" not in console.stderr.read()
