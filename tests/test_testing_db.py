"""TEST_POSTGRES_URL takes the same forms as DATABASE_URL (one normalisation serves both)."""

from __future__ import annotations

import os

import pytest
from sqlalchemy.engine import make_url

from bot.config import load_settings
from bot.testing_db import (
    create_postgres_database,
    drop_postgres_database,
    postgres_admin_url,
    postgres_available,
)
from tests.conftest import unavailable


@pytest.mark.parametrize("given", [
    "postgresql://postgres@db.example:5432/postgres",
    "postgres://postgres@db.example:5432/postgres",
    "postgresql+asyncpg://postgres@db.example:5432/postgres",
])
def test_test_postgres_url_accepts_what_database_url_accepts(
    monkeypatch: pytest.MonkeyPatch, given: str
) -> None:
    monkeypatch.setenv("TEST_POSTGRES_URL", given)

    assert postgres_admin_url() == "postgresql+asyncpg://postgres@db.example:5432/postgres"
    assert postgres_admin_url() == load_settings(_env_file=None, database_url=given).database_url


async def test_a_plain_postgresql_url_reaches_the_server(
    monkeypatch: pytest.MonkeyPatch, postgres_ok: bool
) -> None:
    if not postgres_ok:
        unavailable("PostgreSQL is not reachable (set TEST_POSTGRES_URL)")
    plain = make_url(postgres_admin_url()).set(drivername="postgresql")
    monkeypatch.setenv("TEST_POSTGRES_URL", plain.render_as_string(hide_password=False))
    name = f"liaison_plain_url_{os.getpid()}"

    assert await postgres_available()
    url = await create_postgres_database(name)
    try:
        assert url.startswith("postgresql+asyncpg://") and url.endswith(f"/{name}")
    finally:
        await drop_postgres_database(name)
