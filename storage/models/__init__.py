"""The domain of DOMAIN.md as typed SQLAlchemy models, one module per area.

Times are stored in UTC (`UTCDateTime` gives aware datetimes back on SQLite too);
rendering in a unit's time zone happens at the edge. Importing this package imports
every area, so `Base.metadata` (Alembic's target) holds every table; the names below
are what the rest of the application imports from `storage.models`.
"""

from __future__ import annotations

from storage.models.access import ChatStatus
from storage.models.access import DutyRoom
from storage.models.access import Invitation
from storage.models.access import User
from storage.models.base import NAMING_CONVENTION
from storage.models.base import Base
from storage.models.base import UTCDateTime
from storage.models.base import str_enum
from storage.models.base import utcnow
from storage.models.directory import Agreement
from storage.models.directory import AgreementParty
from storage.models.directory import Branch
from storage.models.directory import Clause
from storage.models.directory import ClauseMechanism
from storage.models.directory import Liaison
from storage.models.directory import Mechanism
from storage.models.directory import Unit
from storage.models.directory import Zone
from storage.models.directory import ZoneMembership
from storage.models.meetings import Meeting
from storage.models.meetings import MeetingParticipant
from storage.models.notices import Notice
from storage.models.notices import NoticeCounter
from storage.models.notices import NoticeDelivery
from storage.models.notices import RoomState
from storage.models.requests import AssistanceRequest
from storage.models.requests import RequestCounter
from storage.models.requests import RequestEvent
from storage.models.rosters import ChairRotation
from storage.models.rosters import ChairRotationEntry
from storage.models.rosters import Roster
from storage.models.rosters import RosterChange
from storage.models.rosters import RosterMember
from storage.models.rosters import ShiftOverride
from storage.models.rosters import ShiftSwap
from storage.models.search_index import ClauseSearchRow
from storage.models.search_index import LiaisonSearchRow
from storage.models.search_index import SearchTokens
from storage.models.system import AuditChain
from storage.models.system import AuditEntry
from storage.models.system import ConversationState
from storage.models.system import DataEpoch
from storage.models.system import HandledUpdate
from storage.models.system import LeaderLease
from storage.models.system import OutboxMessage
from storage.models.system import ScheduleChange
from storage.models.system import ScheduleMark
from storage.models.system import SchedulerHeartbeat
from storage.models.system import SendSlots

__all__ = [
    "NAMING_CONVENTION",
    "Agreement",
    "AgreementParty",
    "AssistanceRequest",
    "AuditChain",
    "AuditEntry",
    "Base",
    "Branch",
    "ChairRotation",
    "ChairRotationEntry",
    "ChatStatus",
    "Clause",
    "ClauseMechanism",
    "ClauseSearchRow",
    "ConversationState",
    "DataEpoch",
    "DutyRoom",
    "HandledUpdate",
    "Invitation",
    "LeaderLease",
    "Liaison",
    "LiaisonSearchRow",
    "Mechanism",
    "Meeting",
    "MeetingParticipant",
    "Notice",
    "NoticeCounter",
    "NoticeDelivery",
    "OutboxMessage",
    "RequestCounter",
    "RequestEvent",
    "RoomState",
    "Roster",
    "RosterChange",
    "RosterMember",
    "ScheduleChange",
    "ScheduleMark",
    "SchedulerHeartbeat",
    "SearchTokens",
    "SendSlots",
    "ShiftOverride",
    "ShiftSwap",
    "UTCDateTime",
    "Unit",
    "User",
    "Zone",
    "ZoneMembership",
    "str_enum",
    "utcnow",
]
