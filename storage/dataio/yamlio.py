"""YAML in and out: a strict loader and a readable, stable dumper.

The loader resolves only what the format needs: null, true/false, decimal
integers and floats. Dates, times and phone numbers stay strings (YAML 1.1 would
turn ``2026-12-03`` into a date, ``20:00`` into the integer 1200 and ``010`` into
an octal number), and a key given twice in one mapping is an error, not a silent
overwrite.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

_BaseLoader: type = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_BaseDumper: type = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


class YamlError(Exception):
    """A syntax error with its 1-based line and column."""

    def __init__(self, message: str, line: int | None, column: int | None) -> None:
        super().__init__(message)
        self.message = message
        self.line = line
        self.column = column


_STR = "tag:yaml.org,2002:str"
_SEQ = "tag:yaml.org,2002:seq"
_MAP = "tag:yaml.org,2002:map"
_IMPLICIT: dict[str, list[tuple[str, re.Pattern[str]]]] = {}


def _implicit(tag: str, pattern: str, first: str) -> None:
    for char in first:
        _IMPLICIT.setdefault(char, []).append((tag, re.compile(pattern)))


_implicit("tag:yaml.org,2002:bool", r"^(?:true|True|TRUE|false|False|FALSE)$", "tTfF")
_implicit("tag:yaml.org,2002:null", r"^(?:~|null|Null|NULL)$", "~nN")
_implicit("tag:yaml.org,2002:int", r"^[-+]?(?:0|[1-9][0-9_]*)$", "-+0123456789")
_implicit("tag:yaml.org,2002:float", r"^[-+]?(?:0|[1-9][0-9_]*)\.[0-9_]+(?:[eE][-+]?[0-9]+)?$",
          "-+0123456789")


class StrictLoader(_BaseLoader):  # type: ignore[misc, valid-type]
    """Safe loading with YAML 1.2-like plain scalars and no duplicate keys."""

    def resolve(self, kind: type, value: Any, implicit: tuple[bool, bool]) -> str:
        # A fast path of Resolver.resolve without path resolvers (called per scalar).
        if kind is yaml.ScalarNode:
            if implicit[0]:
                if value == "":
                    return "tag:yaml.org,2002:null"
                for tag, regexp in _IMPLICIT.get(value[0], ()):
                    if regexp.match(value):
                        return tag
            return _STR
        return _SEQ if kind is yaml.SequenceNode else _MAP

    def construct_mapping(self, node: yaml.Node, deep: bool = False) -> dict[Any, Any]:
        mapping = super().construct_mapping(node, deep=deep)
        if isinstance(node, yaml.MappingNode) and len(mapping) != len(node.value):
            seen: set[Any] = set()
            for key_node, _value in node.value:
                key = self.construct_object(key_node, deep=True)
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        "while constructing a mapping", node.start_mark,
                        f"found duplicate key {key!r}", key_node.start_mark,
                    )
                seen.add(key)
        return mapping


def load_yaml(text: str) -> Any:
    """Parse YAML text; raises YamlError with the position of the first error."""
    try:
        return yaml.load(text, Loader=StrictLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        message = " ".join(
            part for part in (exc.context, exc.problem) if part
        ) or str(exc)
        if mark is None:
            raise YamlError(message, None, None) from exc
        raise YamlError(message, mark.line + 1, mark.column + 1) from exc
    except yaml.YAMLError as exc:
        raise YamlError(str(exc), None, None) from exc


class ReadableDumper(_BaseDumper):  # type: ignore[misc, valid-type]
    """Block style for records, flow style for short lists of scalars."""


def _represent_list(dumper: yaml.SafeDumper, data: list[Any]) -> yaml.Node:
    flow = bool(data) and all(
        isinstance(item, str | int | float | bool) and (not isinstance(item, str) or len(item) < 40)
        for item in data
    )
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flow)


ReadableDumper.add_representer(list, _represent_list)

HEADER = (
    "# Liaison Desk (警务协作值班助手) data file.\n"
    "# Format: docs/data-format.md. Import with `python -m bot import FILE`.\n"
)


def dump_yaml(document: Any, *, header: str | None = HEADER) -> str:
    text = yaml.dump(
        document,
        Dumper=ReadableDumper,
        allow_unicode=True,
        sort_keys=False,
        default_flow_style=False,
        width=100,
        indent=2,
    )
    return (header or "") + text
