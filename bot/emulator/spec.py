"""The Bot API 10.0 specification (api.json, MIT — see LICENSE-telegram-bot-api-spec).

Indexed once (`load_spec` is cached) so the emulator checks each call with dictionary
lookups: method names are case-insensitive, parameters are decoded by their declared
types, and results can be checked against (and filled up to) their declared types.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from functools import cache
from pathlib import Path
from typing import Any

SPEC_FILE = Path(__file__).resolve().parent / "api.json"
SCALARS: dict[str, Any] = {"Integer": 0, "Float": 0.0, "String": "", "Boolean": False,
                           "True": True}
ARRAY = "Array of "
INTEGER = re.compile(r"-?\d+")
BOOLEANS = {"true": True, "True": True, "1": True, "false": False, "False": False, "0": False}


class Kind(Enum):
    """How a form value of a parameter is decoded."""

    STRING = "string"  # sent as-is
    INTEGER_OR_STRING = "integer_or_string"  # chat_id: an id, or "@username"
    FILE = "file"  # a file_id, a URL, "attach://<part>", or the uploaded part itself
    JSON = "json"  # numbers, booleans, objects and arrays arrive JSON-encoded


@dataclass(frozen=True)
class Field:
    name: str
    types: tuple[str, ...]
    required: bool
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
                f["name"]: Field(f["name"], tuple(f["types"]), bool(f["required"]))
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

    def method(self, name: str) -> Method | None:
        return self.methods.get(name.lower())

    def fields(self, type_name: str) -> dict[str, tuple[str, ...]]:
        """Field name -> declared types, for an object type."""
        return self._fields.get(type_name, {})

    def fill(self, type_name: str, value: dict[str, Any]) -> dict[str, Any]:
        """Add plausible values for the required fields the emulator did not set itself."""
        for f in self.types.get(type_name, {}).get("fields", []):
            if f["required"] and f["name"] not in value:
                value[f["name"]] = self.default(f["types"][0])
        return value

    def default(self, type_name: str) -> Any:
        if type_name in SCALARS:
            return SCALARS[type_name]
        if type_name.startswith(ARRAY):
            return []
        subtypes = self.types.get(type_name, {}).get("subtypes")
        return self.fill(subtypes[0] if subtypes else type_name, {})

    def problems(self, types: str | Sequence[str], value: Any, path: str = "result", *,
                 strict: bool = True) -> list[str]:
        """Why `value` is not of any of `types` (empty when it is).

        Checks scalar types and required fields recursively; `strict` also rejects fields
        the type does not declare (for results: Telegram sends only declared fields).
        """
        alternatives = (types,) if isinstance(types, str) else tuple(types)
        return [f"{path}{p}" for p in self._any(alternatives, value, strict)]

    def _any(self, types: Sequence[str], value: Any, strict: bool) -> list[str]:
        """Problems (paths relative to `value`) for the closest of `types`."""
        best: list[str] | None = None
        for type_name in types:
            found = self._one(type_name, value, strict)
            if not found:
                return found
            if best is None or len(found) < len(best):
                best = found
        return best or []

    def _one(self, type_name: str, value: Any, strict: bool) -> list[str]:
        if type_name in SCALARS:
            return [] if _is_scalar(type_name, value) else [f": not {type_name}"]
        if type_name.startswith(ARRAY):
            if not isinstance(value, list):
                return [": not an array"]
            inner = type_name[len(ARRAY):]
            found: list[str] = []
            for i, item in enumerate(value):
                found += [f"[{i}]{p}" for p in self._one(inner, item, strict)]
            return found
        subtypes = self._subtypes.get(type_name)
        if subtypes:
            found = self._any(subtypes, value, strict)
            return [f": matches no subtype of {type_name}", *found] if found else []
        declared = self._fields.get(type_name)
        if declared is None or type_name == "InputFile":  # a file, or a name not in the spec
            return []
        if not isinstance(value, dict):
            return [f": not an object ({type_name})"]
        found = []
        for name, item in value.items():
            types = declared.get(name)
            if types is not None:
                found += [f".{name}{p}" for p in self._any(types, item, strict)]
            elif strict:
                found.append(f".{name}: not a field of {type_name}")
        found += [f".{name}: missing" for name in self._required[type_name] if name not in value]
        return found


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
