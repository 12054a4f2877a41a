"""Strict reading of YAML configuration files, with the line of every key for error messages.

``read_yaml`` returns the parsed data and a LineMap, rejects duplicate keys at any level and
turns YAML syntax errors into one-line ConfigErrors. It also rejects files that would exhaust
memory or the stack: control characters, nesting deeper than MAX_NESTING_DEPTH and aliases
that expand the file to more than MAX_YAML_VALUES values. ``translate_validation_error``
turns a pydantic ValidationError about that data into a ConfigError that names the file,
the dotted field and the line.
"""

from __future__ import annotations

import bisect
import re
import reprlib
import types
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError

from rollback_coordinator.core.errors import ConfigError
from rollback_coordinator.core.settings import CONFIG_DIR_VARIABLE

# Line numbers of mapping keys and sequence items, keyed by their path from the top of the
# file. Mapping keys appear as their YAML scalar text, sequence items as int indexes.
LineMap = dict[tuple[str | int, ...], int]

# Each scalar, sequence and mapping counts as one value, and every alias counts all the
# values of its anchor again, as building Python objects and validating them would. A
# 600-byte file of nested anchors can expand to billions of values ("billion laughs").
MAX_YAML_VALUES = 100_000
# Mappings and lists nested deeper than this are rejected while composing, long before
# Python's recursion limit. services.yaml needs about 6 levels.
MAX_NESTING_DEPTH = 100

_MERGE_TAG = "tag:yaml.org,2002:merge"
# The line breaks that PyYAML counts, so lines computed here match its marks.
_LINE_BREAK = re.compile("\r\n|[\n\r\x85\u2028\u2029]")
_SHORT_TEXT_LIMIT = 60
# Service and field names in an error's location, long enough for any valid name.
NAME_LIMIT = 100
_LISTED_NAMES_LIMIT = 10


def _bounded_repr() -> reprlib.Repr:
    # reprlib stops at these sizes, so quoting a huge value never builds its full repr.
    bounded = reprlib.Repr()
    bounded.maxlevel = 3
    bounded.maxstring = _SHORT_TEXT_LIMIT
    bounded.maxlong = _SHORT_TEXT_LIMIT
    bounded.maxother = _SHORT_TEXT_LIMIT
    return bounded


_BOUNDED_REPR = _bounded_repr()


class FieldValueError(ValueError):
    """A ValueError that a model validator raises about one field of its model.

    pydantic places model validator errors at the model itself, so this error carries the
    field name that ``translate_validation_error`` reports, with that field's line.
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def short_repr(value: Any, limit: int = _SHORT_TEXT_LIMIT) -> str:
    """Return the repr of ``value`` cut to ``limit`` characters, for error messages.

    Large strings, numbers and nested containers are cut while the repr is built, so the
    cost does not depend on the size of the value.
    """
    return short_text(_BOUNDED_REPR.repr(value), limit)


def short_text(text: str, limit: int = _SHORT_TEXT_LIMIT) -> str:
    """Return ``text`` cut to ``limit`` characters, ending in '...' when it was cut."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def name_list(names: Iterable[str]) -> str:
    """Return up to ten names joined by commas, each cut short, and how many were left out."""
    listed: list[str] = []
    left_out = 0
    for name in names:
        if len(listed) < _LISTED_NAMES_LIMIT:
            listed.append(short_text(name))
        else:
            left_out += 1
    text = ", ".join(listed) or "none"
    return text if not left_out else f"{text} and {left_out} more"


@dataclass(frozen=True)
class _Alias:
    """One alias in the file: its anchor name, where it is and the node it refers to."""

    anchor: str
    mark: yaml.Mark
    target: yaml.Node


class _GuardedLoader(yaml.SafeLoader):
    """A SafeLoader that limits nesting and the number of nodes, and records every alias.

    The aliases feed ``_check_expansion``, which runs on the composed nodes before any
    Python object is built.
    """

    def __init__(self, text: str, source: Path) -> None:
        super().__init__(text)
        self.source = source
        self.aliases: list[_Alias] = []
        # Composed nodes, each counted once however many aliases refer to it.
        self.node_count = 0
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            target = self.anchors.get(event.anchor)
            if target is not None:
                self.aliases.append(_Alias(event.anchor, event.start_mark, target))
            return super().compose_node(parent, index)
        self.node_count += 1
        if self.node_count > MAX_YAML_VALUES:
            # Checked while composing, so a huge file fails before all of it is composed.
            raise ConfigError(
                f"the file contains more than {MAX_YAML_VALUES:,} YAML values, far more than "
                f"a configuration file needs; check that this is the right file",
                file=self.source,
                line=event.start_mark.line + 1,
            )
        if self._depth >= MAX_NESTING_DEPTH:
            raise ConfigError(
                f"nesting too deep: more than {MAX_NESTING_DEPTH} levels of mappings and "
                f"lists; flatten the value",
                file=self.source,
                line=event.start_mark.line + 1,
            )
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        # PyYAML lets ValueError escape for scalars such as 2025-13-01 or an integer with
        # more digits than Python converts (4300 by default).
        try:
            return super().construct_object(node, deep)
        except ValueError as error:
            kind = node.tag.rsplit(":", 1)[-1]
            value = short_repr(node.value) if isinstance(node, yaml.ScalarNode) else "the value"
            # Python's advice after the ';' (sys.set_int_max_str_digits) is not for this user.
            reason = _one_line(str(error)).split(";")[0]
            raise ConfigError(
                f"cannot read {value} as a YAML {kind} ({reason}); fix the value or put it in "
                f"quotes",
                file=self.source,
                line=node.start_mark.line + 1,
            ) from None


def read_yaml(source: Path, *, service_section: str | None = None) -> tuple[Any, LineMap]:
    """Parse one YAML document and record the line of every mapping key and sequence item.

    Raise ConfigError for a missing or unreadable file, invalid YAML, duplicate keys,
    characters that YAML does not allow, too deep nesting and too many values after alias
    expansion. ``service_section`` is the top-level key whose entries are services
    (``services`` in services.yaml), so a duplicate key below one of them names that service.
    Return ``(None, {})`` for an empty document.
    """
    text = _read_text(source)
    try:
        loader = _GuardedLoader(text, source)
    except yaml.reader.ReaderError as error:
        raise _character_error(error, text, source) from None
    try:
        node = loader.get_single_node()
        if node is None:
            return None, {}
        _check_expansion(node, loader.aliases, source)
        lines: LineMap = {}
        _record_lines(node, (), lines, source, set(), service_section)
        return loader.construct_document(node), lines
    except yaml.MarkedYAMLError as error:
        raise _yaml_syntax_error(error, source) from None
    except yaml.YAMLError as error:
        raise ConfigError(
            f"invalid YAML ({_one_line(str(error))}); fix the syntax", file=source
        ) from None
    except RecursionError:
        # MAX_NESTING_DEPTH normally stops first; this is reached only when the caller's
        # own stack is already deep. The reader stopped at or just after the deep point.
        raise ConfigError(
            "nesting too deep for the YAML parser; flatten the value",
            file=source,
            line=loader.line + 1,
        ) from None
    finally:
        loader.dispose()


def _read_text(source: Path) -> str:
    try:
        return source.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"file not found; create it or point {CONFIG_DIR_VARIABLE} at the folder that "
            f"contains {source.name}",
            file=source,
        ) from None
    except (OSError, UnicodeDecodeError) as error:
        reason = getattr(error, "strerror", None) or str(error)
        raise ConfigError(
            f"cannot read the file ({reason}); make it a readable UTF-8 text file", file=source
        ) from None


def _character_error(error: yaml.reader.ReaderError, text: str, source: Path) -> ConfigError:
    """Name the line, the column and the character that PyYAML's reader rejected.

    PyYAML reports only a character offset, in a two-line message about "<unicode string>".
    """
    line = 1
    line_start = 0
    for match in _LINE_BREAK.finditer(text, 0, error.position):
        line += 1
        line_start = match.end()
    character = chr(error.character) if isinstance(error.character, int) else error.character
    return ConfigError(
        f"character {character!r} at column {error.position - line_start + 1} is not allowed "
        f"in YAML, which accepts only tab, line breaks and printable characters; remove it",
        file=source,
        line=line,
    )


def _children(node: yaml.Node) -> Sequence[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return node.value
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return ()


def _check_expansion(root: yaml.Node, aliases: list[_Alias], source: Path) -> None:
    """Reject a document that aliases expand to too many values or too deep nesting.

    Size and depth are computed once per node (memoized by identity), and an alias counts
    its target again, so the walk takes time in proportion to the composed nodes even when
    the expansion is astronomically large. The walk uses its own stack, not recursion.
    """
    sizes: dict[int, int] = {}
    depths: dict[int, int] = {}
    entered: set[int] = set()
    pending: list[tuple[yaml.Node, bool]] = [(root, False)]
    while pending:
        node, children_done = pending.pop()
        if children_done:
            children = _children(node)
            size = 1 + sum(sizes[id(child)] for child in children)
            # Capped, so the sums stay small numbers however far the aliases expand.
            sizes[id(node)] = min(size, MAX_YAML_VALUES + 1)
            depths[id(node)] = 1 + max((depths[id(child)] for child in children), default=0)
            if size > MAX_YAML_VALUES:
                problem = (
                    f"too many YAML aliases expand this file to more than "
                    f"{MAX_YAML_VALUES:,} values"
                )
                raise _alias_error(node, aliases, sizes, problem, source)
            if depths[id(node)] > MAX_NESTING_DEPTH:
                problem = f"YAML aliases nest this value more than {MAX_NESTING_DEPTH} levels deep"
                raise _alias_error(node, aliases, depths, problem, source)
            continue
        if id(node) in sizes:
            continue
        if id(node) in entered:
            # Reached again before its own size is known: an alias inside the node refers
            # back to it.
            raise _recursive_alias_error(node, aliases, source)
        entered.add(id(node))
        pending.append((node, True))
        pending.extend((child, False) for child in _children(node))


def _alias_error(
    node: yaml.Node,
    aliases: list[_Alias],
    measure: dict[int, int],
    problem: str,
    source: Path,
) -> ConfigError:
    """Build the error for ``node``, at the alias inside it whose target measures the most.

    ``measure`` maps the id of each node walked so far to its size or its depth.
    """
    positions = [alias.mark.index for alias in aliases]
    first = bisect.bisect_left(positions, node.start_mark.index)
    last = bisect.bisect_right(positions, node.end_mark.index)
    inside = aliases[first:last]
    line = node.start_mark.line + 1
    culprit = ""
    if inside:
        largest = max(inside, key=lambda alias: measure.get(id(alias.target), 0))
        line = largest.mark.line + 1
        culprit = f", mostly through *{short_text(largest.anchor)} on this line"
    return ConfigError(f"{problem}{culprit}; remove the anchors", file=source, line=line)


def _recursive_alias_error(node: yaml.Node, aliases: list[_Alias], source: Path) -> ConfigError:
    alias = next(alias for alias in aliases if alias.target is node)
    return ConfigError(
        f"the YAML alias *{short_text(alias.anchor)} refers to the value that contains "
        f"it, so it would expand without end; remove the alias",
        file=source,
        line=alias.mark.line + 1,
    )


def _yaml_syntax_error(error: yaml.MarkedYAMLError, source: Path) -> ConfigError:
    mark = error.problem_mark or error.context_mark
    problem = " ".join(part for part in (error.context, error.problem) if part)
    return ConfigError(
        f"invalid YAML: {_one_line(problem or str(error))}; fix the syntax at this line",
        file=source,
        line=None if mark is None else mark.line + 1,
    )


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _record_lines(
    node: yaml.Node,
    path: tuple[str | int, ...],
    lines: LineMap,
    source: Path,
    seen: set[int],
    service_section: str | None,
) -> None:
    """Record the lines below ``node`` in ``lines`` and reject duplicate mapping keys.

    PyYAML silently keeps the last of two equal keys, so duplicates are caught here, on
    the composed nodes. A node reached again through an alias is not walked twice.
    """
    if id(node) in seen:
        return
    seen.add(id(node))
    if isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            lines[path + (index,)] = item.start_mark.line + 1
            _record_lines(item, path + (index,), lines, source, seen, service_section)
    if not isinstance(node, yaml.MappingNode):
        return
    first_lines: dict[tuple[str, str], int] = {}
    for key_node, value_node in node.value:
        if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == _MERGE_TAG:
            continue
        line = key_node.start_mark.line + 1
        identity = (key_node.tag, key_node.value)
        if identity in first_lines:
            raise _duplicate_key_error(
                path, key_node.value, first_lines[identity], line, source, service_section
            )
        first_lines[identity] = line
        lines[path + (key_node.value,)] = line
        _record_lines(value_node, path + (key_node.value,), lines, source, seen, service_section)


def _duplicate_key_error(
    path: tuple[str | int, ...],
    key: str,
    first: int,
    again: int,
    source: Path,
    service_section: str | None,
) -> ConfigError:
    keys = [str(part) for part in path if isinstance(part, str)] + [key]
    service: str | None = None
    if service_section is not None and keys[0] == service_section and len(keys) >= 2:
        service, keys = keys[1], keys[2:]
    return ConfigError(
        f"duplicate key {short_repr(key)} on lines {first} and {again}; YAML keeps only the "
        f"last one, so remove or rename one of them",
        file=source,
        service=None if service is None else short_text(service, NAME_LIMIT),
        field=short_text(".".join(keys), NAME_LIMIT) or None,
        line=again,
    )


def line_of(lines: LineMap, path: tuple[str | int, ...]) -> int | None:
    """Return the line of ``path``, or of its closest recorded parent."""
    for end in range(len(path), 0, -1):
        line = lines.get(path[:end])
        if line is not None:
            return line
    return None


def yaml_type_name(value: Any) -> str:
    """Return the YAML word for the type of a parsed value, such as 'mapping' or 'list'."""
    names = {dict: "mapping", list: "list", str: "string", bool: "boolean", type(None): "null"}
    return names.get(type(value), "number" if isinstance(value, (int, float)) else "value")


def translate_validation_error(
    error: ValidationError,
    model: type[BaseModel],
    source: Path,
    lines: LineMap,
    *,
    prefix: tuple[str | int, ...] = (),
    service: str | None = None,
) -> ConfigError:
    """Turn the pydantic error that comes first in the file into a ConfigError.

    ``model`` is the model that validated the data found at ``prefix`` in the file, and
    ``service`` names the service that the data belongs to, if any.
    """
    translated: list[ConfigError] = []
    for detail in error.errors():
        fields, path = _split_location(detail, model)
        translated.append(
            ConfigError(
                _describe_error(detail, path, model),
                file=source,
                service=service,
                field=short_text(".".join(fields), NAME_LIMIT) or None,
                line=line_of(lines, (*prefix, *path)),
            )
        )
    return min(translated, key=lambda candidate: candidate.line or 0)


def _split_location(
    detail: Any, model: type[BaseModel]
) -> tuple[list[str], tuple[str | int, ...]]:
    """Split a pydantic error location into a dotted field name and a path in the file.

    The field name follows model fields and the keys of mappings whose values are models
    or lists, such as ``environments.prod``. It stops at a list index, at a key of a mapping
    of plain values (``env.PGPORT`` gives ``env``) and at a key that is itself invalid.
    Those parts stay in the path and so give the line. The "[key]" marker that pydantic
    adds for dict keys is dropped.
    """
    location = list(detail["loc"])
    if detail["type"] == "value_error" and isinstance(detail["ctx"]["error"], FieldValueError):
        location.append(detail["ctx"]["error"].field)
    annotation: Any = model
    naming = True
    fields: list[str] = []
    path: list[str | int] = []
    for index, part in enumerate(location):
        if part == "[key]":
            continue
        kind, annotation = _child(annotation, part)
        # The LineMap stores mapping keys as their YAML text, so a key such as 1 becomes "1".
        path.append(str(part) if kind == "key" else part)
        key_is_invalid = location[index + 1 : index + 2] == ["[key]"]
        naming = naming and (
            kind == "field" or (kind == "key" and not key_is_invalid and _is_section(annotation))
        )
        if naming:
            fields.append(str(part))
    if detail["type"] == "extra_forbidden":
        fields.append(str(location[-1]))
    return fields, tuple(path)


def _child(annotation: Any, part: str | int) -> tuple[str, Any]:
    """Return the kind of step to ``part`` ("field", "key", "item" or "") and the type there.

    The type is None where ``annotation`` does not say what ``part`` contains.
    """
    model = _nested_model(annotation)
    if model is not None:
        if isinstance(part, str) and part in model.model_fields:
            return "field", model.model_fields[part].annotation
        return "", None
    for candidate in _unwrap(annotation):
        if get_origin(candidate) is dict:
            return "key", get_args(candidate)[1]
        if get_origin(candidate) is list and isinstance(part, int):
            return "item", get_args(candidate)[0]
    return "", None


def _is_section(annotation: Any) -> bool:
    """Return whether mapping values of this type are sections (models or lists), not data."""
    return any(
        _nested_model(candidate) is not None or get_origin(candidate) in (list, dict)
        for candidate in _unwrap(annotation)
    )


def _unwrap(annotation: Any) -> tuple[Any, ...]:
    """Return the types that ``annotation`` allows, without None and Annotated metadata."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _unwrap(get_args(annotation)[0])
    if origin is Union or origin is types.UnionType:
        allowed = [_unwrap(item) for item in get_args(annotation) if item is not type(None)]
        return tuple(item for items in allowed for item in items)
    return (annotation,)


def _nested_model(annotation: Any) -> type[BaseModel] | None:
    for candidate in _unwrap(annotation):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def _model_at(model: type[BaseModel], path: tuple[str | int, ...]) -> type[BaseModel] | None:
    annotation: Any = model
    for part in path:
        _, annotation = _child(annotation, part)
    return _nested_model(annotation)


def _describe_error(detail: Any, path: tuple[str | int, ...], model: type[BaseModel]) -> str:
    kind = detail["type"]
    value = detail.get("input")
    if kind == "extra_forbidden":
        parent = _model_at(model, path[:-1])
        allowed = ", ".join(parent.model_fields) if parent is not None else "none"
        return (
            f"unknown key {short_repr(path[-1])}; remove it or fix its spelling "
            f"(allowed keys: {allowed})"
        )
    if kind == "missing":
        return f"required key {path[-1]!r} is missing; add it"
    if kind == "value_error":
        return _one_line(str(detail["ctx"]["error"]))
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return (
            f"expected a mapping, got a {yaml_type_name(value)} ({short_repr(value)}); "
            f"fix the value"
        )
    message = detail["msg"][:1].lower() + detail["msg"][1:]
    return f"invalid value {short_repr(value)}: {_one_line(message)}{_type_hint(kind, value)}"


def _type_hint(kind: str, value: Any) -> str:
    """Return the usual fix for a YAML value that parsed to the wrong type, or ''."""
    if kind in ("int_type", "float_type") and isinstance(value, str):
        return "; write the number without quotes"
    if kind == "bool_type":
        return "; write true or false"
    if kind == "finite_number":
        return "; .inf and .nan are not allowed, so write a number"
    if kind == "string_type" and isinstance(value, (bool, type(None))):
        return "; put the value in quotes"
    return ""
