"""The domain of DOMAIN.md as typed SQLAlchemy models, one module per area.

Times are stored in UTC (`UTCDateTime` gives aware datetimes back on SQLite too);
rendering in a unit's time zone happens at the edge. Importing this package imports
every area, so `Base.metadata` (Alembic's target) holds every table; the names below
are what the rest of the application imports from `storage.models`.
"""

from __future__ import annotations

from storage.models.access import ChatStatus, DutyRoom, Invitation, User
from storage.models.base import NAMING_CONVENTION, Base, UTCDateTime, str_enum, utcnow
from storage.models.directory import (
    Agreement,
    AgreementParty,
    Branch,
    Clause,
    ClauseMechanism,
    Liaison,
    Mechanism,
    Unit,
    Zone,
    ZoneMembership,
)
from storage.models.meetings import Meeting, MeetingParticipant
from storage.models.notices import Notice, NoticeCounter, NoticeDelivery, RoomState
from storage.models.requests import AssistanceRequest, RequestCounter, RequestEvent
from storage.models.rosters import (
    ChairRotation,
    ChairRotationEntry,
    Roster,
    RosterChange,
    RosterMember,
    ShiftOverride,
    ShiftSwap,
)
from storage.models.search_index import ClauseSearchRow, LiaisonSearchRow, SearchTokens
from storage.models.system import (
    AuditChain,
    AuditEntry,
    ConversationState,
    DataEpoch,
    HandledUpdate,
    LeaderLease,
    OutboxMessage,
    ScheduleChange,
    ScheduleMark,
    SchedulerHeartbeat,
    SendSlots,
)

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
