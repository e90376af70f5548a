"""Role names as people type them, in either script or English."""

from __future__ import annotations

from core.enums import Role

ROLE_ALIASES: dict[str, Role] = {
    **{role.value: role for role in Role},
    "duty": Role.duty_officer,
    "administrator": Role.admin,
    "民警": Role.officer,
    "警员": Role.officer,
    "联络员": Role.officer,
    "聯絡員": Role.officer,
    "值班员": Role.duty_officer,
    "值班員": Role.duty_officer,
    "值班民警": Role.duty_officer,
    "协调员": Role.coordinator,
    "協調員": Role.coordinator,
    "管理员": Role.admin,
    "管理員": Role.admin,
}


def parse_role(text: str) -> Role | None:
    return ROLE_ALIASES.get(text.strip().lower().replace("-", "_"))


def may_invite(inviter: Role | None, role: Role) -> bool:
    """Coordinators invite up to their own rank; only administrators create administrators."""
    if inviter is None or not inviter.at_least(Role.coordinator):
        return False
    return inviter.at_least(role)
