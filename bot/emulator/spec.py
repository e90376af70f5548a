"""The Bot API 10.0 specification (api.json, MIT — see LICENSE-telegram-bot-api-spec),
indexed so the emulator can check every call and shape every result as Telegram would."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

SPEC_FILE = Path(__file__).resolve().parent / "api.json"
SCALARS = {"Integer": 0, "Float": 0.0, "String": "", "Boolean": False, "True": True}


@dataclass(frozen=True)
class Field:
    name: str
    types: tuple[str, ...]
    required: bool

    @property
    def is_plain_string(self) -> bool:
        """Sent as-is by clients; every other type arrives JSON-encoded in a form field."""
        return self.types == ("String",)


@dataclass(frozen=True)
class Method:
    name: str
    fields: dict[str, Field]
    returns: tuple[str, ...]


class Spec:
    def __init__(self, document: dict[str, Any]) -> None:
        self.version: str = document["version"]
        self.methods: dict[str, Method] = {}
        for name, method in document["methods"].items():
            fields = {
                f["name"]: Field(f["name"], tuple(f["types"]), bool(f["required"]))
                for f in method.get("fields", [])
            }
            self.methods[name.lower()] = Method(name, fields, tuple(method["returns"]))
        self.types: dict[str, dict[str, Any]] = document["types"]

    def method(self, name: str) -> Method | None:
        return self.methods.get(name.lower())

    def required_fields(self, type_name: str) -> list[tuple[str, str]]:
        spec = self.types.get(type_name, {})
        return [(f["name"], f["types"][0]) for f in spec.get("fields", []) if f["required"]]

    def fill(self, type_name: str, value: dict[str, Any]) -> dict[str, Any]:
        """Add plausible values for required fields the emulator did not set itself."""
        for name, field_type in self.required_fields(type_name):
            if name not in value:
                value[name] = self.default(field_type)
        return value

    def default(self, type_name: str) -> Any:
        if type_name in SCALARS:
            return SCALARS[type_name]
        if type_name.startswith("Array of "):
            return []
        subtypes = self.types.get(type_name, {}).get("subtypes")
        return self.fill(subtypes[0] if subtypes else type_name, {})

    def problems(self, type_name: str, value: Any, path: str = "result") -> list[str]:
        """Where `value` lacks a required field of `type_name` (recursively)."""
        if type_name.startswith("Array of "):
            if not isinstance(value, list):
                return [f"{path}: not an array"]
            inner = type_name.removeprefix("Array of ")
            return [p for i, v in enumerate(value) for p in self.problems(inner, v, f"{path}[{i}]")]
        if type_name in SCALARS or type_name not in self.types:
            return []
        spec = self.types[type_name]
        if spec.get("subtypes"):
            return [] if any(not self.problems(s, value, path) for s in spec["subtypes"]) else [
                f"{path}: matches no subtype of {type_name}"]
        if not isinstance(value, dict):
            return [f"{path}: not an object"]
        found: list[str] = []
        for field in spec.get("fields", []):
            name = field["name"]
            if name not in value:
                if field["required"]:
                    found.append(f"{path}.{name}: missing")
                continue
            found += self.problems(field["types"][0], value[name], f"{path}.{name}")
        return found


@cache
def load_spec() -> Spec:
    return Spec(json.loads(SPEC_FILE.read_text(encoding="utf-8")))


def decode(field: Field | None, raw: Any) -> Any:
    """A parameter as the client meant it: JSON for every non-string type."""
    if not isinstance(raw, str) or (field is not None and field.is_plain_string):
        return raw
    try:
        return json.loads(raw)
    except ValueError:
        return raw
