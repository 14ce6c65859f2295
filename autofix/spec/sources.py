"""YAML documents that remember where each value came from, and pydantic errors turned into
:class:`~autofix.errors.Problem` lines naming file, line and field.

Specs and policy files are data: they are read with PyYAML's safe loader only (no tags that
build objects), duplicate keys are rejected instead of silently keeping the last one, and
every validation error is reported at once with the line of the offending key.
"""

from __future__ import annotations

import math
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydantic
import yaml

from autofix.errors import InputError, Problem

__all__ = ["MAX_DEPTH", "MAX_NODES", "Source", "dotted", "load_yaml", "problems_from_validation", "source_from_data"]

Loc = tuple[Any, ...]


@dataclass
class Source:
    """A parsed document: its plain data and the line of every mapping key / list item."""

    path: str
    data: Any
    lines: dict[Loc, int] = field(default_factory=dict)

    def line_of(self, loc: Loc) -> int | None:
        """Line of the deepest known prefix of ``loc`` (a missing key points at its parent)."""
        for end in range(len(loc), -1, -1):
            line = self.lines.get(tuple(loc[:end]))
            if line is not None:
                return line
        return None


def source_from_data(data: Any, name: str = "<dict>") -> Source:
    """Wrap data given from Python (no file, so no line numbers)."""
    return Source(path=name, data=data)


def load_yaml(path: str | Path) -> Source:
    """Read one YAML file safely; raise :class:`InputError` on any unreadable or malformed input."""
    name = str(path)
    try:
        text = Path(path).read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise InputError([Problem(name, None, "", "file not found")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError([Problem(name, None, "", f"cannot read as UTF-8 text: {exc}")]) from None
    loader = None
    try:
        _check_depth(text, name)
        loader = yaml.SafeLoader(text)
        try:
            node = loader.get_single_node()
        except RecursionError:  # PyYAML composes recursively: ~450 levels exhaust the stack
            raise InputError([Problem(name, None, "", f"nested too deeply; at most {MAX_DEPTH} levels")]) from None
        if node is None:
            raise InputError([Problem(name, None, "", "file is empty; expected a YAML mapping")])
        lines: dict[Loc, int] = {}
        problems: list[Problem] = []
        _index(node, (), lines, problems, name, _Walk())
        if problems:
            raise InputError(problems)
        data = loader.construct_document(node)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        what = getattr(exc, "problem", None) or str(exc)
        if isinstance(exc, yaml.reader.ReaderError):  # no mark; its str() is two lines
            line = text.count("\n", 0, exc.position) + 1
            char = f"#x{exc.character:04x}" if isinstance(exc.character, int) else repr(exc.character)
            what = f"character {char} is not allowed in YAML text ({exc.reason})"
        what = " ".join(str(what).split())  # one line per problem, whatever PyYAML says
        raise InputError([Problem(name, line, "", f"invalid YAML: {what}")]) from None
    finally:
        if loader is not None:
            loader.dispose()
    return Source(path=name, data=data, lines=lines)


MAX_DEPTH = 100
"""Deepest nesting accepted: specs and policy files are a few levels deep."""
MAX_NODES = 100_000
"""Most values a document may hold with its aliases expanded: a few aliases nested in each
other ("billion laughs") would otherwise expand to millions when walked, printed or dumped."""


_OPEN = (yaml.BlockMappingStartToken, yaml.BlockSequenceStartToken, yaml.FlowMappingStartToken,
         yaml.FlowSequenceStartToken)
_CLOSE = (yaml.BlockEndToken, yaml.FlowMappingEndToken, yaml.FlowSequenceEndToken)


_SCAN_DEPTH = 3 * MAX_DEPTH  # below this, the walk of the composed nodes says which field


def _check_depth(text: str, name: str) -> None:
    """Refuse nesting far deeper than :data:`MAX_DEPTH` from the tokens, before composing:
    PyYAML's scanner is quadratic in the nesting depth (20,000 ``[`` took 8 s) and its composer
    recursive (~450 levels exhaust Python's stack)."""
    scanner = yaml.SafeLoader(text)
    depth = 0
    try:
        while (token := scanner.get_token()) is not None:
            depth += isinstance(token, _OPEN) - isinstance(token, _CLOSE)
            if depth > _SCAN_DEPTH:
                raise InputError([Problem(name, token.start_mark.line + 1, "",
                                          f"nested too deeply; at most {MAX_DEPTH} levels")])
    finally:
        scanner.dispose()


@dataclass
class _Walk:
    nodes: int = 0
    path: set[int] = field(default_factory=set)  # ids of the collections above the current node


def _index(node: yaml.Node, loc: Loc, lines: dict, problems: list, name: str, walk: _Walk) -> None:
    """Record the line of every key and item below ``node``; collect duplicate keys.

    Also refuses what would make every later step blow up: an alias that contains itself, a
    nesting deeper than :data:`MAX_DEPTH`, and more than :data:`MAX_NODES` values once aliases
    are expanded.
    """
    line = node.start_mark.line + 1
    lines.setdefault(loc, line)
    walk.nodes += 1
    refused = ""
    if id(node) in walk.path:
        refused = "an alias refers to a value that contains it (recursive anchor)"
    elif len(loc) > MAX_DEPTH:
        refused, loc = f"nested too deeply; at most {MAX_DEPTH} levels", loc[:3] + ("...",)
    elif walk.nodes > MAX_NODES:
        refused = f"more than {MAX_NODES:,} values once aliases are expanded (an alias bomb?)"
    if refused:
        problems.append(Problem(name, line, dotted(loc), refused))
        return
    if not isinstance(node, (yaml.MappingNode, yaml.SequenceNode)):
        return
    walk.path.add(id(node))
    try:
        _index_children(node, loc, lines, problems, name, walk)
    finally:
        walk.path.discard(id(node))


def _index_children(node: yaml.Node, loc: Loc, lines: dict, problems: list, name: str, walk: _Walk) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, int] = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else str(key_node)
            line = key_node.start_mark.line + 1
            if key in seen:
                where = dotted(loc + (key,))
                problems.append(Problem(name, line, where, f"duplicate key (first set on line {seen[key]})"))
            seen[key] = line
            lines[loc + (key,)] = line
            _index(value_node, loc + (key,), lines, problems, name, walk)
            if walk.nodes > MAX_NODES:
                return
    else:
        for i, item in enumerate(node.value):
            lines[loc + (i,)] = item.start_mark.line + 1
            _index(item, loc + (i,), lines, problems, name, walk)
            if walk.nodes > MAX_NODES:
                return


def dotted(loc: Loc) -> str:
    """``('policies', 0, 'then')`` -> ``policies[0].then``."""
    out = ""
    for part in loc:
        if isinstance(part, str) and not part.isprintable():
            part = repr(part)  # a key with a line break would split the one-line message
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def problems_from_validation(
    err: pydantic.ValidationError, source: Source, model: type | None = None, base: Loc = ()
) -> list[Problem]:
    """One :class:`Problem` per pydantic error, located through ``source``'s line map.

    ``base`` is the location of the validated value inside the document (so a policy validated
    on its own still points at its line in the whole file).
    """
    problems = []
    root = _at(source.data, base)
    for e in err.errors(include_url=False):
        loc = _data_loc(root, tuple(e["loc"]), keep_last=e["type"] == "missing")
        if e["type"] in ("union_tag_invalid", "union_tag_not_found"):
            loc += (e["ctx"]["discriminator"].strip("'"),)
        full = base + loc
        problems.append(Problem(source.path, source.line_of(full), dotted(full), _message(e, model, loc, root)))
    return problems


def _at(data: Any, loc: Loc) -> Any:
    for part in loc:
        data = data[part]
    return data


def _data_loc(data: Any, loc: Loc, keep_last: bool) -> Loc:
    """Drop the steps pydantic adds that are not keys of the document (union tags, validators).

    A last step that is not in the document is kept only for a missing required field.
    """
    out: list[Any] = []
    for i, part in enumerate(loc):
        last = i == len(loc) - 1
        if isinstance(data, dict) and part in data:
            data = data[part]
        elif isinstance(data, list) and isinstance(part, int) and 0 <= part < len(data):
            data = data[part]
        elif not (keep_last and last and isinstance(data, dict) and isinstance(part, str)):
            continue
        out.append(part)
    return tuple(out)


def _message(e: Mapping[str, Any], model: type | None, loc: Loc, root: Any) -> str:
    kind = e["type"]
    if kind == "union_tag_invalid":
        key = e["ctx"]["discriminator"].strip("'")
        return f"unknown {key} {e['ctx']['tag']!r}; available: {e['ctx']['expected_tags']}"
    if kind == "union_tag_not_found":
        if "expected_tags" in e.get("ctx", {}):
            return f"required field is missing; one of: {e['ctx'].get('expected_tags', '?')}"
        return "required field is missing"
    if kind == "extra_forbidden":
        allowed = _allowed_keys(model, loc[:-1], root) if model else []
        hint = f"; expected one of: {', '.join(allowed)}" if allowed else ""
        return f"unknown key{hint}"
    if kind == "missing":
        return "required field is missing"
    msg = e["msg"]
    if kind == "string_pattern_mismatch":
        msg = f"expected text matching {e['ctx']['pattern']}"
    elif msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    elif msg.startswith("Input should be "):
        msg = "expected " + msg[len("Input should be "):]
    if "input" in e and kind not in ("value_error", "assertion_error"):
        msg += f", got {_show(e['input'])}"
    return msg


def _show(value: Any) -> str:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _allowed_keys(model: Any, loc: Loc, data: Any) -> list[str]:
    """Walk a pydantic model type along ``loc`` and list the keys allowed there."""
    current = model
    for part in loc:
        current = _pick_member(_unwrap(current), data)
        data = data[part] if isinstance(data, (dict, list)) else None
        if isinstance(part, int):
            args = typing.get_args(current)
            current = args[0] if args else None
        elif isinstance(current, type) and issubclass(current, pydantic.BaseModel):
            info = current.model_fields.get(part)
            current = info.annotation if info else None
        else:
            args = typing.get_args(current)
            current = args[-1] if args else None
    current = _pick_member(_unwrap(current), data)
    if isinstance(current, type) and issubclass(current, pydantic.BaseModel):
        return sorted(f.alias or k for k, f in current.model_fields.items() if not f.exclude)
    return []


def _pick_member(tp: Any, data: Any) -> Any:
    """For a union of models (an action list entry), the member whose Literal tag matches ``data``."""
    if typing.get_origin(tp) not in (typing.Union, types.UnionType) or not isinstance(data, dict):
        return tp
    for member in typing.get_args(tp):
        member = _unwrap(member)
        if not (isinstance(member, type) and issubclass(member, pydantic.BaseModel)):
            continue
        tags = {k: typing.get_args(f.annotation) for k, f in member.model_fields.items()
                if typing.get_origin(f.annotation) is typing.Literal}
        if tags and all(data.get(k) in v for k, v in tags.items() if k in data) and any(k in data for k in tags):
            return member
    return tp


def _unwrap(tp: Any) -> Any:
    """Optional[X] / X | None -> X; Annotated[X, ...] -> X."""
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        return _unwrap(typing.get_args(tp)[0])
    if origin in (typing.Union, types.UnionType):
        members = [a for a in typing.get_args(tp) if a is not type(None)]
        return _unwrap(members[0]) if len(members) == 1 else tp
    return tp
