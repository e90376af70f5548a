"""The desk behind PgBouncer in transaction mode: every transaction may run on another
server connection, so nothing may rely on session state (prepared statements kept
across transactions, advisory locks, LISTEN). Lookups, a request, a broadcast shared by
two processes' workers and the scheduler lease taken over all work through it.

PgBouncer is a Debian package (`pgbouncer`); .ci/run installs it. Outside CI the tests
are skipped with a reason when it is missing (`unavailable`)."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from datetime import UTC
from datetime import datetime
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from bot.emulator import BotApiEmulator
from bot.scheduler import JOB_PREFIX
from tests.cluster import FIRST_ROOM
from tests.cluster import all_sent
from tests.cluster import broadcast
from tests.cluster import broadcast_counts
from tests.cluster import eventually
from tests.cluster import reminders_sent
from tests.cluster import rooms
from tests.cluster import seed_reminder
from tests.conftest import SAMPLE_ADMIN
from tests.conftest import SAMPLE_OFFICER
from tests.conftest import unavailable
from tests.test_leader import meeting_jobs as due_jobs
from tools.testing import BotHarness
from tools.testing_db import postgres_admin_url

PGBOUNCER = shutil.which("pgbouncer") or next(
    (p for p in ("/usr/sbin/pgbouncer", "/usr/bin/pgbouncer") if Path(p).exists()), None)
SERVER_CONNECTIONS = 2  # few, so every client's transactions hop between them


class PgBouncer:
    """A PgBouncer in transaction mode on a free port, in front of the test server."""

    def __init__(self, server_host: str, server_port: int) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="liaison-pgbouncer-"))
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        (self.dir / "users.txt").write_text('"postgres" ""\n')
        (self.dir / "pgbouncer.ini").write_text(
            "[databases]\n"
            f"* = host={server_host} port={server_port}\n"
            "[pgbouncer]\n"
            f"listen_addr = 127.0.0.1\nlisten_port = {self.port}\nunix_socket_dir =\n"
            f"auth_type = trust\nauth_file = {self.dir / 'users.txt'}\n"
            "pool_mode = transaction\n"
            f"default_pool_size = {SERVER_CONNECTIONS}\nreserve_pool_size = 0\n"
            "max_client_conn = 400\n"
            f"logfile = {self.dir / 'pgbouncer.log'}\n"
            # asyncpg sends this; PgBouncer passes on only what it knows
            "ignore_startup_parameters = extra_float_digits\n")
        # PgBouncer will not run as root.
        self.user = ["-u", "postgres"] if os.geteuid() == 0 else []
        if self.user:
            shutil.chown(self.dir, "postgres")
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        assert PGBOUNCER is not None
        self.process = subprocess.Popen(
            [PGBOUNCER, *self.user, str(self.dir / "pgbouncer.ini")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.1).close()
                return
            except OSError:
                if self.process.poll() is not None:
                    break
                subprocess.run(["sleep", "0.05"], check=False)  # a blocking fixture
        raise RuntimeError(f"PgBouncer did not start: {self.log()}")

    def log(self) -> str:
        path = self.dir / "pgbouncer.log"
        return path.read_text() if path.exists() else ""

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def bouncer() -> Iterator[PgBouncer]:
    if PGBOUNCER is None:
        unavailable("PgBouncer is not installed (Debian: apt-get install pgbouncer; "
                    ".ci/run installs it)")
    url = make_url(postgres_admin_url())
    server = PgBouncer(url.host or "127.0.0.1", url.port or 5432)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def database_url(postgres_url: str, bouncer: PgBouncer) -> str:
    """Every test here, and the fixtures it uses (the sample desk's import among them),
    reaches the server through PgBouncer (PostgreSQL only: no SQLite run)."""
    url = make_url(postgres_url).set(host="127.0.0.1", port=bouncer.port)
    return url.update_query_dict({"pgbouncer": "true"}).render_as_string(hide_password=False)


async def test_officers_are_answered_through_pgbouncer(desk: BotHarness,
                                                      bouncer: PgBouncer) -> None:
    """Many lookups at once share two server connections: each answered, none failed."""
    replies = await asyncio.gather(*(desk.send(SAMPLE_OFFICER, "/contact 陕西")
                                     for _ in range(30)))
    assert all("陝西" in r.text or "陕西" in r.text for r in replies), replies[0].text
    assert "prepared statement" not in bouncer.log()
    admin = await desk.send(SAMPLE_ADMIN, "/contact 四川")
    assert "四川" in admin.text


async def test_a_broadcast_and_the_lease_through_pgbouncer(
        emulator: BotApiEmulator, database_url: str) -> None:
    """Two processes' workers share a broadcast, each room once; the scheduler lease is
    held, lost when it expires and taken over with a higher token, the reminder sent once."""
    chats = rooms(40)
    for chat in chats:
        emulator.add_group(chat, "值班室")
    emulator.add_group(FIRST_ROOM + 1, "值班室")
    emulator.add_group(FIRST_ROOM + 2, "值班室")
    fast = {"leader_retry_seconds": 0.2, "leader_lease_seconds": 1.0}
    async with BotHarness(emulator, database_url, **fast) as first, \
            BotHarness(emulator, database_url, **fast) as second:
        await broadcast(first.db, chats, "pgb")
        first.services.delivery.start()  # both workers claim from the one outbox
        second.services.delivery.start()
        await eventually(lambda: all_sent(first.db, len(chats)), 30, "the broadcast")
        assert broadcast_counts(emulator, "pgb") == dict.fromkeys(chats, 1)

        leaders = [h for h in (first, second) if h.services.leader.is_leader]
        assert len(leaders) == 1
        leader, follower = (first, second) if leaders[0] is first else (second, first)
        token = leader.services.leader.token
        await leader.services.leader.stop()  # ends its lease: the follower takes it
        await eventually(lambda: follower.services.leader.is_leader, 10, "a takeover")
        assert follower.services.leader.token == token + 1
        def meeting_jobs(harness: BotHarness) -> set[str]:  # not the notice's own jobs
            return {job for job in due_jobs(harness) if job.startswith(f"{JOB_PREFIX}meetings:")}

        assert not meeting_jobs(follower)
        await seed_reminder(leader.db, FIRST_ROOM + 2, datetime.now(UTC) + timedelta(hours=1))
        await follower.services.rescheduled("meetings")
        assert len(meeting_jobs(follower)) == 1 and not meeting_jobs(leader)
        meeting = await seed_reminder(leader.db, FIRST_ROOM + 1,
                                      datetime.now(UTC) - timedelta(seconds=30))
        assert not any((await leader.services.scheduler.run_due()).values())  # fenced
        await follower.run_due()
        assert reminders_sent(emulator, meeting) == 1
