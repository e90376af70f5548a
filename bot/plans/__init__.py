"""Scheduler planners, one module per feature (escalations, reminders, handovers, ...).

Each planner factory takes the Services and returns an object satisfying
`bot.scheduler.Planner`; `PLANNERS` lists the factories the application runs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bot.scheduler import Planner
    from bot.services import Services

PLANNERS: list[Callable[[Services], Planner]] = []

from bot.plans import chair  # noqa: E402
from bot.plans import meetings  # noqa: E402
from bot.plans import roster  # noqa: E402

PLANNERS += [meetings.planner, roster.planner, chair.planner]

from bot.plans import requests as request_plans  # noqa: E402

PLANNERS += [request_plans.planner]

from bot.plans import notices as notice_plans  # noqa: E402

PLANNERS += [notice_plans.planner]

from bot.plans import audit as audit_plans  # noqa: E402

PLANNERS += [audit_plans.planner]
