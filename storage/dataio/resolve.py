"""References and identities: what the file's names point at, in the file or the database.

Names are resolved by `Catalog`s (`catalog.py`). Entities in the file override the
database rows with the same code, so a file that renames a unit is checked against its
new name.
"""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field
from typing import Any

from core.clock import DEFAULT_ZONE
from core.normalize import normalize
from storage.dataio.catalog import Catalog
from storage.dataio.catalog import Tiers
from storage.dataio.catalog import agreement_tiers
from storage.dataio.catalog import fold
from storage.dataio.catalog import named_tiers
from storage.dataio.catalog import unit_tiers
from storage.dataio.catalog import zone_tiers
from storage.dataio.converters import BAD
from storage.dataio.problems import Problems
from storage.dataio.schema import SECTIONS
from storage.dataio.schema import usable


@dataclass
class RoomInfo:
    key: str
    unit: str
    title: str
    chat_id: int | None
    timezone: str | None


@dataclass
class Existing:
    """What the database already holds, as far as validation needs to know."""

    zones: dict[str, Tiers] = field(default_factory=dict)
    units: dict[str, Tiers] = field(default_factory=dict)
    unit_parents: dict[str, str | None] = field(default_factory=dict)
    unit_timezones: dict[str, str | None] = field(default_factory=dict)
    branches: dict[str, Tiers] = field(default_factory=dict)
    mechanisms: dict[str, Tiers] = field(default_factory=dict)
    agreements: dict[str, Tiers] = field(default_factory=dict)
    duty_rooms: dict[str, RoomInfo] = field(default_factory=dict)
    liaisons: list[LiaisonInfo] = field(default_factory=list)


@dataclass(frozen=True)
class LiaisonInfo:
    """A liaison in the database, as far as spotting a second spelling of it needs."""

    unit: str
    name: str
    key: str | None
    telegram_id: int | None


@dataclass
class Plan:
    """The validated file: clean records whose references are identities (codes)."""

    sections: dict[str, list[dict[str, Any]]]


def ok(record: dict[str, Any], name: str) -> Any:
    """A field's clean value, or None when it is missing or failed its check."""
    value = record.get(name)
    return None if value is BAD else value


def _first_paths(records: list[dict[str, Any]], key: str) -> dict[Any, str]:
    paths: dict[Any, str] = {}
    for record in records:
        if usable(record, key) and record.get(key) is not None:
            paths.setdefault(record[key], record["_path"])
    return paths


class Resolver:
    def __init__(
        self, sections: dict[str, list[dict[str, Any]]], existing: Existing, problems: Problems
    ) -> None:
        self.s = sections
        self.existing = existing
        self.problems = problems
        self.zones = Catalog("zone")
        self.units = Catalog("unit")
        self.branches = Catalog("branch")
        self.mechanisms = Catalog("mechanism")
        self.agreements = Catalog("agreement")

    # ------------------------------------------------------------------ helpers

    def bad(self, record: dict[str, Any], path: str, key: str, **values: Any) -> None:
        self.problems.add(path, key, **values)
        record["_bad"] = True

    def one(self, record: dict[str, Any], name: str, catalog: Catalog) -> None:
        value = record.get(name)
        if value is None or value is BAD:
            return
        code, error = catalog.resolve(value)
        if error:
            self.bad(record, f"{record['_path']}.{name}", error[0], **error[1])
            record[name] = BAD
        else:
            record[name] = code

    def many(
        self, record: dict[str, Any], name: str, catalog: Catalog,
        seen: dict[str, str] | None = None,
    ) -> None:
        """Resolve a list; an entity named twice (here or in `seen`) is an error."""
        values = record.get(name)
        if not values or values is BAD:
            return
        seen = {} if seen is None else seen
        codes: list[str] = []
        for index, value in enumerate(values):
            path = f"{record['_path']}.{name}[{index}]"
            code, error = catalog.resolve(value)
            if error:
                self.bad(record, path, error[0], **error[1])
            elif code in seen:
                self.bad(record, path, "listed_twice", value=value, other_path=seen[code])
            else:
                seen[code] = path
                codes.append(code)
        record[name] = codes

    def unique(self, section: str, key: Any, what: str) -> None:
        """Records of a section must not share an identity; `key` computes it (or None)."""
        first: dict[Any, str] = {}
        for record in self.s[section]:
            identity = key(record)
            if identity is None:
                continue
            if identity in first:
                self.bad(record, record["_path"], "duplicate", what_kind=what,
                         other_path=first[identity])
            else:
                first[identity] = record["_path"]

    def register(
        self, section: str, catalog: Catalog, existing: dict[str, Tiers], tiers: Any
    ) -> None:
        """The database's entities, then the file's (which override them by code).

        A record with a bad or duplicate code is registered under a stand-in key with
        those of its names no one else has, so references to it raise no further errors.
        """
        for code, value in existing.items():
            catalog.put(code, value)
        seen: dict[str, str] = {}
        stand_ins: list[dict[str, Any]] = []
        for record in self.s[section]:
            if not usable(record, "code"):
                stand_ins.append(record)
                continue
            code = record["code"]
            if code in seen:
                record["_dup"] = True
                self.bad(record, f"{record['_path']}.code", "duplicate_code", code=code,
                         other_path=seen[code])
                stand_ins.append(record)
                continue
            seen[code] = record["_path"]
            catalog.put(code, tiers(record))
        taken = {fold(name) for value in catalog.entries.values() for level in value
                 for name in level}
        for record in stand_ins:
            own = tiers({**record, "code": ""})
            free = tuple(tuple(n for n in level if fold(n) not in taken) for level in own)
            catalog.put(f"#{record['_path']}", free)

    def unique_names(self, section: str, catalog: Catalog, label: str, column: str) -> None:
        """A unique column (unit name, branch name): no two entities may share it."""
        owners: dict[str, list[str]] = {}
        for code, tiers in catalog.entries.items():
            if len(tiers) > 1 and tiers[1] and not code.startswith("#"):
                owners.setdefault(tiers[1][0], []).append(code)
        paths = _first_paths(self.s[section], "code")
        for record in self.s[section]:
            if not usable(record, "code", column) or record.get("_dup"):
                continue
            others = [c for c in owners.get(record[column], []) if c != record["code"]]
            if not others:
                continue
            other = others[0]
            if other in paths:
                self.bad(record, f"{record['_path']}.{column}", "name_taken", value=record[column],
                         field=column, what_kind=label, code=other, other_path=paths[other])
            else:
                self.bad(record, f"{record['_path']}.{column}", "name_taken_in_database",
                         value=record[column], field=column, what_kind=label, code=other)

    # ------------------------------------------------------------------ the checks

    def run(self) -> Plan:
        s = self.s
        self.register("zones", self.zones, self.existing.zones, lambda r: zone_tiers(
            r["code"], ok(r, "name"), ok(r, "short_name"), ok(r, "english"), ok(r, "aliases")))
        self.register("units", self.units, self.existing.units, lambda r: unit_tiers(
            r["code"], ok(r, "name"), ok(r, "short_name"), ok(r, "abbreviation"),
            ok(r, "english"), ok(r, "aliases")))
        for section, catalog, existing in (
            ("branches", self.branches, self.existing.branches),
            ("mechanisms", self.mechanisms, self.existing.mechanisms),
        ):
            self.register(section, catalog, existing, lambda r: named_tiers(
                r["code"], ok(r, "name"), ok(r, "english"), ok(r, "aliases")))
        self.register("agreements", self.agreements, self.existing.agreements,
                      lambda r: agreement_tiers(r["code"], ok(r, "title"), ok(r, "short_title")))
        self.unique_names("units", self.units, "unit", "name")
        self.unique_names("branches", self.branches, "branch", "name")
        self.unique_names("mechanisms", self.mechanisms, "mechanism", "name")

        for record in s["zones"]:
            seen: dict[str, str] = {}
            self.many(record, "members", self.units, seen)
            self.many(record, "partners", self.units, seen)
        self._units()
        for record in s["users"]:
            self.one(record, "unit", self.units)
        self.unique("users", lambda r: r["telegram_id"] if usable(r, "telegram_id") else None,
                    "user_telegram_id")
        for record in s["liaisons"]:
            self.one(record, "unit", self.units)
            self.one(record, "branch", self.branches)
        self.unique("liaisons", lambda r: (r["unit"], r["branch"], r["name"])
                    if usable(r, "unit", "branch", "name") else None,
                    "liaison_identity")
        self.unique("liaisons", lambda r: r["key"] if usable(r, "key") and r["key"] else None,
                    "liaison_key")
        self.unique("liaisons", lambda r: (r["unit"], r["branch"], r["telegram_id"])
                    if usable(r, "unit", "branch", "telegram_id") and r["telegram_id"]
                    else None, "liaison_telegram_id")
        self._script_twins()
        self._liaison_script_twins()
        rooms = self._duty_rooms()
        self._rosters(rooms)
        for record in s["chair_rotations"]:
            self.one(record, "zone", self.zones)
            self.many(record, "order", self.units)
        self.unique("chair_rotations", lambda r: r["zone"] if usable(r, "zone") else None,
                    "zone_rotation")
        self._agreements()
        self._meetings()
        return Plan({name: s[name] for name in SECTIONS})

    def _script_twins(self) -> None:
        """Names that differ only by script (河北省公安厅 / 河北省公安廳) are likely one
        entity written twice: zones, units and branches by name, in the file and against
        the database (an entity under its own code may change script: that is a rename)."""
        for section, catalog in (("zones", self.zones), ("units", self.units),
                                 ("branches", self.branches)):
            paths = _first_paths(self.s[section], "code")
            seen: dict[str, tuple[str, str]] = {}  # script-free name → (code, name)
            for code, tiers in catalog.entries.items():
                stored = code not in paths and not code.startswith("#")
                if stored and len(tiers) > 1 and tiers[1]:
                    seen.setdefault(normalize(tiers[1][0]), (code, tiers[1][0]))
            for record in self.s[section]:
                if not usable(record, "code", "name") or record.get("_dup"):
                    continue
                name = record["name"]
                code, other = seen.setdefault(normalize(name), (record["code"], name))
                if code == record["code"] or fold(other) == fold(name):
                    continue
                if code in paths:
                    self.bad(record, f"{record['_path']}.name", "script_twin", value=name,
                             other=other, what_kind=catalog.label, other_path=paths[code])
                else:
                    self.bad(record, f"{record['_path']}.name", "script_twin_in_database",
                             value=name, other=other, what_kind=catalog.label, code=code)

    def _liaison_script_twins(self) -> None:
        """Two liaisons of one unit whose names differ only by script are likely one
        person, unless the record names the stored one by its key or telegram_id (a
        corrected name) or the file also lists the stored spelling (two people)."""
        records = [r for r in self.s["liaisons"] if usable(r, "unit", "name", "key",
                                                          "telegram_id")]
        spelled = {(r["unit"], fold(r["name"])) for r in records}
        stored: dict[tuple[str, str], list[LiaisonInfo]] = {}
        for info in self.existing.liaisons:
            stored.setdefault((info.unit, normalize(info.name)), []).append(info)
        first: dict[tuple[str, str], dict[str, Any]] = {}
        for record in records:
            name, same = record["name"], (record["unit"], normalize(record["name"]))
            earlier = first.setdefault(same, record)
            if earlier is not record and fold(earlier["name"]) != fold(name):
                self.bad(record, f"{record['_path']}.name", "liaison_script_twin", value=name,
                         other=earlier["name"], other_path=earlier["_path"])
                continue
            for info in stored.get(same, []):
                itself = (record["key"] and record["key"] == info.key) or (
                    record["telegram_id"] and record["telegram_id"] == info.telegram_id)
                if not itself and fold(info.name) != fold(name) \
                        and (info.unit, fold(info.name)) not in spelled:
                    self.bad(record, f"{record['_path']}.name",
                             "liaison_script_twin_in_database", value=name, other=info.name)
                    break

    def _units(self) -> None:
        parents = dict(self.existing.unit_parents)
        for record in self.s["units"]:
            self.one(record, "parent", self.units)
            if usable(record, "code", "parent"):
                if record["parent"] == record["code"]:
                    self.bad(record, f"{record['_path']}.parent", "own_parent")
                    continue
                parents[record["code"]] = record["parent"]
        for record in self.s["units"]:
            if not usable(record, "code", "parent") or record["parent"] is None:
                continue
            chain, current = [record["code"]], parents.get(record["code"])
            while current is not None and current not in chain:
                chain.append(current)
                current = parents.get(current)
            if current is not None and current == record["code"]:
                self.bad(record, f"{record['_path']}.parent", "parent_loop",
                         chain=" → ".join([*chain, current]))

    def _duty_rooms(self) -> dict[str, RoomInfo]:
        """Match the file's rooms to the database's (by chat id, else unit and title)."""
        by_chat = {r.chat_id: r.key for r in self.existing.duty_rooms.values() if r.chat_id}
        by_title = {(r.unit, fold(r.title)): r.key for r in self.existing.duty_rooms.values()}
        rooms = dict(self.existing.duty_rooms)
        for index, record in enumerate(self.s["duty_rooms"]):
            self.one(record, "unit", self.units)
            if not usable(record, "unit", "title"):
                continue
            chat = record["chat_id"] if usable(record, "chat_id") else None
            key = by_chat.get(chat) if chat else None
            if key is None:
                key = by_title.get((record["unit"], fold(record["title"])))
            record["_key"] = key or f"new:{index}"
        self.unique("duty_rooms", lambda r: r.get("_key"), "room_identity")
        self.unique("duty_rooms", lambda r: ok(r, "chat_id"), "room_chat_id")
        placed: set[str] = set()
        for record in self.s["duty_rooms"]:
            key = record.get("_key")
            if key is None or key in placed:
                continue
            placed.add(key)
            rooms[key] = RoomInfo(
                key, record["unit"], record["title"],
                record["chat_id"] if usable(record, "chat_id") else None,
                record["timezone"] if usable(record, "timezone") else None)
        return rooms

    def _rosters(self, rooms: dict[str, RoomInfo]) -> None:
        by_chat: dict[int, list[str]] = {}
        by_title: dict[str, list[str]] = {}
        by_unit: dict[str, list[str]] = {}
        for room in rooms.values():
            if room.chat_id:
                by_chat.setdefault(room.chat_id, []).append(room.key)
            by_title.setdefault(fold(room.title), []).append(room.key)
            by_unit.setdefault(room.unit, []).append(room.key)
        for record in self.s["rosters"]:
            value = record.get("duty_room")
            if value is None or value is BAD:
                continue
            path = f"{record['_path']}.duty_room"
            if isinstance(value, int):
                keys = by_chat.get(value, [])
            else:
                keys = by_title.get(fold(value), [])
                if not keys:
                    unit, _error = self.units.resolve(value)
                    keys = by_unit.get(unit, []) if unit else []
            if len(keys) != 1:
                if keys:
                    self.bad(record, path, "many_rooms", value=value, count=len(keys))
                else:
                    self.bad(record, path, "no_room", value=value)
                record["duty_room"] = BAD
                continue
            room = rooms[keys[0]]
            record["duty_room"] = room.key
            if record.get("timezone") is None:
                record["timezone"] = (room.timezone or self._unit_timezone(room.unit)
                                      or DEFAULT_ZONE)
        self.unique("rosters", lambda r: r["duty_room"] if usable(r, "duty_room") else None,
                    "room_roster")

    def _unit_timezone(self, code: str) -> str | None:
        for record in self.s["units"]:
            if usable(record, "code", "timezone") and record["code"] == code:
                return record["timezone"]
        return self.existing.unit_timezones.get(code)

    def _agreements(self) -> None:
        for record in self.s["agreements"]:
            self.one(record, "zone", self.zones)
            self.one(record, "supersedes", self.agreements)
            if usable(record, "code", "supersedes") and record["supersedes"] == record["code"]:
                self.bad(record, f"{record['_path']}.supersedes", "own_supersedes")
            self.many(record, "parties", self.units)
            clauses = record.get("clauses")
            if not clauses or clauses is BAD:
                continue
            numbers: dict[str, str] = {}
            for clause in clauses:
                self.many(clause, "mechanisms", self.mechanisms)
                if clause.get("_bad"):
                    record["_bad"] = True
                number = clause.get("number")
                if number is None or number is BAD:
                    continue
                if number in numbers:
                    self.bad(record, f"{clause['_path']}.number", "duplicate_clause",
                             number=number, other_path=numbers[number])
                else:
                    numbers[number] = clause["_path"]

    def _meetings(self) -> None:
        for record in self.s["meetings"]:
            self.one(record, "zone", self.zones)
            self.many(record, "participants", self.units)
        self.unique("meetings", lambda r: r["code"] if usable(r, "code") and r["code"] else None,
                    "meeting_code")
        self.unique(
            "meetings",
            lambda r: (fold(r["title"]), r["starts_at"])
            if usable(r, "title", "starts_at") and r.get("code") is None else None,
            "meeting_identity",
        )


def resolve(
    sections: dict[str, list[dict[str, Any]]], existing: Existing, problems: Problems
) -> Plan:
    return Resolver(sections, existing, problems).run()
