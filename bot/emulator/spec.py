"""The Bot API 10.0 specification (api.json, MIT — see LICENSE-telegram-bot-api-spec).

Indexed once (`load_spec` is cached) so the emulator checks each call with dictionary
lookups: method names are case-insensitive, parameters are decoded by their declared
types, and results can be checked against (and filled up to) their declared types.

Beyond types, the spec states some rules in its prose, and those are read from it too
(`Rule`, `Kinds`): a field's fixed value ("Scope type, must be chat", "always
\"creator\"": how a union's subtypes are told apart), its allowed values ("Must be one
of \"danger\", \"success\" or \"primary\""), its length ("1-256 characters", "1-64
bytes"; not the lengths counted "after entities parsing", which the emulator checks on
the parsed text) and, for an object, how many of its optional fields may be used at once
("Exactly one of the fields other than text, … must be used").
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field
from enum import Enum
from functools import cache
from pathlib import Path
from typing import Any

from bot.emulator.records import utf16_len

SPEC_FILE = Path(__file__).resolve().parent / "api.json"
SCALARS: dict[str, Any] = {"Integer": 0, "Float": 0.0, "String": "", "Boolean": False,
                           "True": True}
ARRAY = "Array of "
INTEGER = re.compile(r"-?\d+")
# The rules the spec states in prose (see the module's docstring).
FIXED = re.compile(r'(?:, must be|, always) "?([a-z_]+)"?\.?$')
ONE_OF = re.compile(r"must be one of (.+?)(?:\.(?:\s|$)|$)", re.IGNORECASE)
QUOTED = re.compile(r'"([^"]+)"')
LENGTH = re.compile(r"(\d+)-(\d+) (characters|bytes)")
KINDS = re.compile(r"(exactly|at most) one of the (optional fields|fields other than (.+?))"
                   r"(?: must| can|\.)", re.IGNORECASE)
LIST_SEPARATORS = re.compile(r",\s*(?:and\s+)?|\s+and\s+")
BOOLEANS = {"true": True, "True": True, "1": True, "false": False, "False": False, "0": False}


class Kind(Enum):
    """How a form value of a parameter is decoded."""

    STRING = "string"  # sent as-is
    INTEGER_OR_STRING = "integer_or_string"  # chat_id: an id, or "@username"
    FILE = "file"  # a file_id, a URL, "attach://<part>", or the uploaded part itself
    JSON = "json"  # numbers, booleans, objects and arrays arrive JSON-encoded


@dataclass(frozen=True)
class Problem:
    """Why a value is not what the spec declares: where, why, and (`rule`: "Type.field",
    or the type for a rule of the whole object) which stated rule it breaks, by which
    Telegram names some of its refusals."""

    path: str
    reason: str
    rule: str = ""

    def under(self, prefix: str) -> Problem:
        return Problem(prefix + self.path, self.reason, self.rule)

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


@dataclass(frozen=True)
class Rule:
    """What a String field's description allows beyond its type: only `values` (a fixed
    value is a single one), and between `length` characters or bytes (`unit`)."""

    values: tuple[str, ...] = ()
    length: tuple[int, int] | None = None
    unit: str = "characters"

    @classmethod
    def read(cls, description: str) -> Rule | None:
        fixed = FIXED.search(description)
        one_of = ONE_OF.search(description)
        values = (fixed.group(1),) if fixed else \
            tuple(QUOTED.findall(one_of.group(1))) if one_of else ()
        length = LENGTH.search(description)
        if length is not None and "entities parsing" in description:
            length = None  # counted on the parsed text, which the emulator measures itself
        if not values and length is None:
            return None
        if length is None:
            return cls(values)
        return cls(values, (int(length.group(1)), int(length.group(2))), length.group(3))

    def broken_by(self, value: Any) -> str | None:
        if not isinstance(value, str):
            return None
        if self.values and value not in self.values:
            allowed = self.values[0] if len(self.values) == 1 else \
                f"one of {', '.join(self.values)}"
            return f"must be {allowed}, not {value!r}"
        if self.length is not None:
            size = len(value.encode()) if self.unit == "bytes" else utf16_len(value)
            low, high = self.length
            if not low <= size <= high:
                return f"{size} {self.unit}, not {low}-{high}"
        return None

    @property
    def example(self) -> str:
        """A value that keeps the rule (filled into what the emulator answers)."""
        if self.values:
            return self.values[0]
        return "x" * (self.length[0] if self.length else 0)


@dataclass(frozen=True)
class Kinds:
    """An object whose `fields` say what kind it is: `exactly` one of them (else at
    most one) may be used."""

    fields: frozenset[str]
    exactly: bool

    @classmethod
    def read(cls, spec: dict[str, Any]) -> Kinds | None:
        found = KINDS.search(" ".join(spec.get("description", [])))
        if found is None:
            return None
        declared = spec.get("fields", [])
        if found.group(3):
            exempt = {name.strip() for name in LIST_SEPARATORS.split(found.group(3))}
            fields = {f["name"] for f in declared if f["name"] not in exempt}
        else:
            fields = {f["name"] for f in declared if not f["required"]}
        return cls(frozenset(fields), found.group(1).lower() == "exactly")

    def broken_by(self, value: dict[str, Any]) -> str | None:
        used = sorted(self.fields.intersection(value))
        if len(used) == 1 or (not used and not self.exactly):
            return None
        wanted = "exactly one" if self.exactly else "at most one"
        return f"{wanted} of {', '.join(sorted(self.fields))} (has {', '.join(used) or 'none'})"


@dataclass(frozen=True)
class Field:
    """A method's parameter: its declared types, and the rule its description states."""

    name: str
    types: tuple[str, ...]
    required: bool
    rule: Rule | None = None
    kind: Kind = field(init=False)

    def __post_init__(self) -> None:
        if self.types == ("String",):
            kind = Kind.STRING
        elif "InputFile" in self.types:
            kind = Kind.FILE
        elif set(self.types) == {"Integer", "String"}:
            kind = Kind.INTEGER_OR_STRING
        else:
            kind = Kind.JSON
        object.__setattr__(self, "kind", kind)


@dataclass(frozen=True)
class Method:
    name: str
    fields: dict[str, Field]
    required: tuple[str, ...]
    returns: tuple[str, ...]


class Spec:
    def __init__(self, document: dict[str, Any]) -> None:
        self.version: str = document["version"]
        self.types: dict[str, dict[str, Any]] = document["types"]
        self.methods: dict[str, Method] = {}
        for name, method in document["methods"].items():
            fields = {
                f["name"]: Field(f["name"], tuple(f["types"]), bool(f["required"]),
                                 Rule.read(f["description"]) if "String" in f["types"] else None)
                for f in method.get("fields", [])
            }
            required = tuple(n for n, f in fields.items() if f.required)
            self.methods[name.lower()] = Method(name, fields, required,
                                                tuple(method["returns"]))
        self._fields = {
            name: {f["name"]: tuple(f["types"]) for f in spec.get("fields", [])}
            for name, spec in self.types.items()
        }
        self._subtypes = {name: tuple(spec["subtypes"]) for name, spec in self.types.items()
                          if spec.get("subtypes")}
        self._required = {name: tuple(f["name"] for f in spec.get("fields", []) if f["required"])
                          for name, spec in self.types.items()}
        self._rules: dict[str, dict[str, Rule]] = {}
        self._kinds: dict[str, Kinds] = {}
        # A subtype's fixed values (its "type", a member's "status"…), to tell which
        # subtype of a union a value means.
        self._tags: dict[str, dict[str, str]] = {}
        for name, spec in self.types.items():
            rules = {f["name"]: rule for f in spec.get("fields", [])
                     if "String" in f["types"] and (rule := Rule.read(f["description"]))}
            self._rules[name] = rules
            self._tags[name] = {field_name: rule.values[0] for field_name, rule in rules.items()
                                if len(rule.values) == 1 and field_name in self._required[name]}
            kinds = Kinds.read(spec)
            if kinds is not None:
                self._kinds[name] = kinds

    def method(self, name: str) -> Method | None:
        return self.methods.get(name.lower())

    def fields(self, type_name: str) -> dict[str, tuple[str, ...]]:
        """Field name -> declared types, for an object type."""
        return self._fields.get(type_name, {})

    def fill(self, type_name: str, value: dict[str, Any]) -> dict[str, Any]:
        """Add plausible values for the required fields the emulator did not set itself
        (keeping the rules the spec states for them)."""
        rules = self._rules.get(type_name, {})
        for f in self.types.get(type_name, {}).get("fields", []):
            if f["required"] and f["name"] not in value:
                rule = rules.get(f["name"])
                value[f["name"]] = rule.example if rule and f["types"][0] == "String" \
                    else self.default(f["types"][0])
        return value

    def default(self, type_name: str) -> Any:
        if type_name in SCALARS:
            return SCALARS[type_name]
        if type_name.startswith(ARRAY):
            return []
        subtypes = self.types.get(type_name, {}).get("subtypes")
        return self.fill(subtypes[0] if subtypes else type_name, {})

    def parameter_problems(self, field_: Field, value: Any) -> list[Problem]:
        """Why a decoded parameter is not what the spec declares: its own rule, and for
        JSON-encoded values their types, recursively (parameters may carry fields this
        version of the spec does not declare)."""
        broken = field_.rule.broken_by(value) if field_.rule is not None else None
        if broken:
            return [Problem(field_.name, broken)]
        if field_.kind is not Kind.JSON:
            return []
        return self.problems(field_.types, value, field_.name, strict=False)

    def problems(self, types: str | Sequence[str], value: Any, path: str = "result", *,
                 strict: bool = True) -> list[Problem]:
        """Why `value` is not of any of `types` (empty when it is).

        Checks scalar types, required fields and the rules the spec states, recursively;
        `strict` also rejects fields the type does not declare (for results: Telegram
        sends only declared fields).
        """
        alternatives = (types,) if isinstance(types, str) else tuple(types)
        return [p.under(path) for p in self._any(alternatives, value, strict)]

    def _any(self, types: Sequence[str], value: Any, strict: bool) -> list[Problem]:
        """Problems (paths relative to `value`) for the closest of `types`: one that
        declares some of the value's fields before one that declares none, then the one
        with the fewest problems."""
        best: tuple[bool, int] | None = None
        best_found: list[Problem] = []
        for type_name in types:
            found = self._one(type_name, value, strict)
            if not found:
                return found
            rank = (not self._declares(type_name, value), len(found))
            if best is None or rank < best:
                best, best_found = rank, found
        return best_found

    def _declares(self, type_name: str, value: Any) -> bool:
        if not isinstance(value, dict):
            return True
        names = (type_name, *self._subtypes.get(type_name, ()))
        return any(name in self._fields.get(t, {}) for t in names for name in value)

    def _one(self, type_name: str, value: Any, strict: bool) -> list[Problem]:
        if type_name in SCALARS:
            return [] if _is_scalar(type_name, value) else [Problem("", f"not {type_name}")]
        if type_name.startswith(ARRAY):
            if not isinstance(value, list):
                return [Problem("", "not an array")]
            inner = type_name[len(ARRAY):]
            found: list[Problem] = []
            for i, item in enumerate(value):
                found += [p.under(f"[{i}]") for p in self._one(inner, item, strict)]
            return found
        subtypes = self._subtypes.get(type_name)
        if subtypes:
            found = self._any(self._tagged(subtypes, value), value, strict)
            return [Problem("", f"matches no subtype of {type_name}", type_name), *found] \
                if found else []
        declared = self._fields.get(type_name)
        if declared is None or type_name == "InputFile":  # a file, or a name not in the spec
            return []
        if not isinstance(value, dict):
            return [Problem("", f"not an object ({type_name})")]
        rules = self._rules[type_name]
        found = []
        for name, item in value.items():
            types = declared.get(name)
            if types is None:
                if strict:
                    found.append(Problem(f".{name}", f"not a field of {type_name}"))
                continue
            found += [p.under(f".{name}") for p in self._any(types, item, strict)]
            rule = rules.get(name)
            broken = rule.broken_by(item) if rule is not None else None
            if broken:
                found.append(Problem(f".{name}", broken, f"{type_name}.{name}"))
        found += [Problem(f".{name}", "missing", f"{type_name}.{name}")
                  for name in self._required[type_name] if name not in value]
        kinds = self._kinds.get(type_name)
        broken = kinds.broken_by(value) if kinds is not None else None
        if broken:
            found.append(Problem("", broken, type_name))
        return found

    def _tagged(self, subtypes: Sequence[str], value: Any) -> Sequence[str]:
        """The subtypes whose fixed values the value carries (a scope's "type": "chat"),
        else all of them."""
        if not isinstance(value, dict):
            return subtypes
        tagged = [s for s in subtypes if (tags := self._tags.get(s))
                  and all(value.get(k) == v for k, v in tags.items())]
        return tagged or subtypes


def _is_scalar(type_name: str, value: Any) -> bool:
    if type_name == "String":
        return isinstance(value, str)
    if type_name in {"Boolean", "True"}:
        return isinstance(value, bool) and (type_name == "Boolean" or value)
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (type_name == "Float" and isinstance(value, float))


@cache
def load_spec() -> Spec:
    return Spec(json.loads(SPEC_FILE.read_text(encoding="utf-8")))


def decode(field_: Field | None, raw: Any) -> Any:
    """A parameter as the client meant it, by its declared type.

    Clients send strings as-is and everything else JSON-encoded, so "123" is an integer
    only where the spec says Integer; a JSON body already carries typed values.
    Raises ValueError for a value that cannot be what the spec declares.
    """
    if field_ is None:
        return raw
    kind = field_.kind
    if not isinstance(raw, str):
        return str(raw) if kind is Kind.STRING and isinstance(raw, int | float) else raw
    if kind is Kind.STRING or kind is Kind.FILE:
        return raw
    if kind is Kind.INTEGER_OR_STRING:
        return int(raw) if INTEGER.fullmatch(raw) else raw
    if field_.types == ("Boolean",) and raw in BOOLEANS:
        return BOOLEANS[raw]
    return json.loads(raw)
