"""Users' and chats' data in the database (bot/persistence.py), below PTB."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import event

from bot.persistence import DatabasePersistence
from storage.db import Database


async def test_a_flush_of_many_people_is_written_together_and_the_last_value_wins(
    db: Database,
) -> None:
    """PTB hands over every touched user's and chat's data at once at each flush: one
    transaction holds them, not one each; a key handed over twice keeps its last value."""
    persistence = DatabasePersistence(db)
    commits: list[Any] = []
    event.listen(db.engine.sync_engine, "commit", commits.append)

    await asyncio.gather(*(persistence.update_user_data(n, {"n": n}) for n in range(1, 41)),
                         persistence.update_chat_data(-7, {"queries": {"1": "四川"}}),
                         persistence.update_chat_data(-7, {"queries": {"2": "云南"}}))

    assert len(commits) <= 2
    users = await persistence.get_user_data()
    assert len(users) == 40 and users[5] == {"n": 5}
    assert (await persistence.get_chat_data())[-7] == {"queries": {"2": "云南"}}
    await asyncio.gather(persistence.drop_chat_data(-7), persistence.update_user_data(5, {}))
    assert -7 not in await persistence.get_chat_data()
    assert 5 not in await persistence.get_user_data()
