"""Alembic environment: runs against the engine the application uses (async)."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection
from sqlalchemy.engine import make_url

from storage.db import create_engine
from storage.migrate import autogenerate_filter
from storage.models import Base

config = context.config
target_metadata = Base.metadata
# Column types of our own (UTCDateTime, SearchTokens) are written into new migrations as
# `storage.models.<Type>`, the package's names (the template imports storage.models),
# not by the module of the area that defines them.
TYPES_PREFIX = "storage.models."


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        include_object=autogenerate_filter(connection.dialect.name),
        user_module_prefix=TYPES_PREFIX,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_async() -> None:
    engine = create_engine(config.get_main_option("sqlalchemy.url"))
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run)
            await connection.commit()
    finally:
        await engine.dispose()


if context.is_offline_mode():
    url = config.get_main_option("sqlalchemy.url")
    context.configure(url=url, target_metadata=target_metadata,
                      include_object=autogenerate_filter(make_url(url).get_backend_name()),
                      user_module_prefix=TYPES_PREFIX)
    with context.begin_transaction():
        context.run_migrations()
else:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
    else:
        asyncio.run(_run_async())
