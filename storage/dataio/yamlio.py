"""YAML in and out: a strict loader and a readable, stable dumper.

The loader resolves only what the format needs: null, true/false, decimal
integers and floats. Dates, times and phone numbers stay strings (YAML 1.1 would
turn ``2026-12-03`` into a date, ``20:00`` into the integer 1200, ``010`` into
an octal number and ``+8610000000148`` into a number without its '+'), and a key
given twice in one mapping is an error, not a silent overwrite. It can record the
line of every mapping, key and list item (`Positions`), so problems found later name
their line; syntax errors are reworded for people and point at the line to fix (the
opening bracket or quote that was never closed, not the end of the file). Nesting deeper
than MAX_DEPTH is refused before the document is built (`check_depth`).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import yaml

_BaseLoader: type = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_BaseDumper: type = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


class YamlError(Exception):
    """A syntax error: a message key of `import.problems`, its values, 1-based line and column."""

    def __init__(self, key: str, values: dict[str, Any], line: int | None,
                 column: int | None) -> None:
        super().__init__(key)
        self.key = key
        self.values = values
        self.line = line
        self.column = column


# A data file nests sections, records, lists in a field and their items: about six
# levels. Anything much deeper is not a data file (and deep enough would crash the loader).
MAX_DEPTH = 20
_OPENING = (yaml.MappingStartEvent, yaml.SequenceStartEvent)
_CLOSING = (yaml.MappingEndEvent, yaml.SequenceEndEvent)

_STR = "tag:yaml.org,2002:str"
_SEQ = "tag:yaml.org,2002:seq"
_MAP = "tag:yaml.org,2002:map"
_IMPLICIT: dict[str, list[tuple[str, re.Pattern[str]]]] = {}


def _implicit(tag: str, pattern: str, first: str) -> None:
    for char in first:
        _IMPLICIT.setdefault(char, []).append((tag, re.compile(pattern)))


_implicit("tag:yaml.org,2002:bool", r"^(?:true|True|TRUE|false|False|FALSE)$", "tTfF")
_implicit("tag:yaml.org,2002:null", r"^(?:~|null|Null|NULL)$", "~nN")
# No '+' on integers: `+8610000000148` is a phone number and keeps its '+' as text.
_implicit("tag:yaml.org,2002:int", r"^-?(?:0|[1-9][0-9_]*)$", "-0123456789")
_implicit("tag:yaml.org,2002:float", r"^[-+]?(?:0|[1-9][0-9_]*)\.[0-9_]+(?:[eE][-+]?[0-9]+)?$",
          "-+0123456789")


# The base is libyaml's C loader when present, chosen at import: mypy cannot type it.
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

    positions: dict[int, Any] | None = None

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

    def construct_located_map(self, node: yaml.MappingNode) -> Iterator[dict[Any, Any]]:
        data: dict[Any, Any] = {}
        yield data
        data.update(self.construct_mapping(node))
        if self.positions is not None:
            self.positions[id(data)] = (node.start_mark.line + 1, {
                key_node.value: key_node.start_mark.line + 1 for key_node, _ in node.value})

    def construct_located_seq(self, node: yaml.SequenceNode) -> Iterator[list[Any]]:
        data: list[Any] = []
        yield data
        data.extend(self.construct_sequence(node))
        if self.positions is not None:
            self.positions[id(data)] = [item.start_mark.line + 1 for item in node.value]


StrictLoader.add_constructor(_MAP, StrictLoader.construct_located_map)
StrictLoader.add_constructor(_SEQ, StrictLoader.construct_located_seq)

# PyYAML's wording → (message key, whether the line to fix is the context's: where the
# unclosed bracket or quote opened, rather than where the parser gave up).
_SYNTAX: tuple[tuple[str, str, bool], ...] = (
    ("while parsing a flow sequence", "yaml_unclosed_list", True),
    ("while parsing a flow mapping", "yaml_unclosed_braces", True),
    ("while scanning a quoted scalar", "yaml_unclosed_quote", True),
    ("while scanning a simple key", "yaml_missing_colon", True),
    ("found duplicate key", "yaml_duplicate_key", False),
    ("mapping values are not allowed", "yaml_colon_in_value", False),
    ("cannot start any token", "yaml_bad_character", False),
    ("expected <block end>", "yaml_indentation", False),  # PyYAML's words
    ("did not find expected '-' indicator", "yaml_indentation", False),  # libyaml's
    ("did not find expected key", "yaml_indentation", False),
)


def syntax_error(exc: yaml.MarkedYAMLError) -> YamlError:
    """A PyYAML error in words a coordinator understands, at the line to fix."""
    context, problem = exc.context or "", exc.problem or ""
    original = " ".join(part for part in (context, problem) if part) or str(exc)
    key, at_context = next(((known, at) for phrase, known, at in _SYNTAX
                            if phrase in context or phrase in problem), ("yaml_other", False))
    mark = (exc.context_mark if at_context else None) or exc.problem_mark or exc.context_mark
    values: dict[str, Any] = {"detail": original}
    if key == "yaml_duplicate_key":
        values["key"] = problem.removeprefix("found duplicate key ")
    if mark is None:
        return YamlError(key, values, None, None)
    return YamlError(key, values, mark.line + 1, mark.column + 1)


def check_depth(text: str, limit: int = MAX_DEPTH) -> None:
    """Refuse lists and mappings nested deeper than `limit`, from the event stream alone.

    Building the document recurses once per level (in libyaml's composer, in C, and in
    the constructor), so `[[[[…` 50,000 deep killed the process with a segmentation fault
    before any error could be told. The parser itself keeps its nesting on a heap stack:
    reading events in a flat loop is safe at any depth, and costs about a hundredth of
    the load. Raises YamlError("yaml_too_deep") at the first container too deep."""
    depth = 0
    for event in yaml.parse(text, Loader=_BaseLoader):
        kind = type(event)
        if kind in _OPENING:
            depth += 1
            if depth > limit:
                mark = event.start_mark
                raise YamlError("yaml_too_deep", {"limit": limit}, mark.line + 1,
                                mark.column + 1)
        elif kind in _CLOSING:
            depth -= 1


def load_yaml(text: str, positions: dict[int, Any] | None = None) -> Any:
    """Parse YAML text; raises YamlError with the place to fix. With `positions`, the
    lines of every mapping, key and list item are recorded there (by `id()`)."""
    loader = StrictLoader(text)
    loader.positions = positions
    try:
        check_depth(text)
        return loader.get_single_data()
    except yaml.MarkedYAMLError as exc:
        raise syntax_error(exc) from exc
    except yaml.YAMLError as exc:
        raise YamlError("yaml_other", {"detail": str(exc)}, None, None) from exc
    finally:
        loader.dispose()


# Chosen at import like StrictLoader's base.
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
