"""Strict reading of YAML configuration files, with the line of every key for error messages.

``read_yaml`` returns the parsed data and a LineMap, rejects duplicate keys at any level and
turns YAML syntax errors into one-line ConfigErrors. ``translate_validation_error`` turns a
pydantic ValidationError about that data into a ConfigError that names the file, the dotted
field and the line.
"""

from __future__ import annotations

import types
from pathlib import Path
from typing import Annotated, Any, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError

from rollback_coordinator.core.errors import ConfigError
from rollback_coordinator.core.settings import CONFIG_DIR_VARIABLE

# Line numbers of mapping keys and sequence items, keyed by their path from the top of the
# file. Mapping keys appear as their YAML scalar text, sequence items as int indexes.
LineMap = dict[tuple[str | int, ...], int]

_MERGE_TAG = "tag:yaml.org,2002:merge"


class FieldValueError(ValueError):
    """A ValueError that a model validator raises about one field of its model.

    pydantic places model validator errors at the model itself, so this error carries the
    field name that ``translate_validation_error`` reports, with that field's line.
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def read_yaml(source: Path, *, service_section: str | None = None) -> tuple[Any, LineMap]:
    """Parse one YAML document and record the line of every mapping key and sequence item.

    Raise ConfigError for a missing or unreadable file, invalid YAML and duplicate keys.
    ``service_section`` is the top-level key whose entries are services (``services`` in
    services.yaml), so a duplicate key below one of them names that service.
    Return ``(None, {})`` for an empty document.
    """
    try:
        text = source.read_text(encoding="utf-8")
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
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, {}
        lines: LineMap = {}
        _record_lines(node, (), lines, source, set(), service_section)
        return loader.construct_document(node), lines
    except yaml.MarkedYAMLError as error:
        raise _yaml_syntax_error(error, source) from None
    except yaml.YAMLError as error:
        raise ConfigError(f"invalid YAML ({_one_line(str(error))}); fix the syntax", file=source)
    finally:
        loader.dispose()


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
        f"duplicate key {key!r} on lines {first} and {again}; YAML keeps only the last one, "
        f"so remove or rename one of them",
        file=source,
        service=service,
        field=".".join(keys) or None,
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
                field=".".join(fields) or None,
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
        return f"unknown key {path[-1]!r}; remove it or fix its spelling (allowed keys: {allowed})"
    if kind == "missing":
        return f"required key {path[-1]!r} is missing; add it"
    if kind == "value_error":
        return _one_line(str(detail["ctx"]["error"]))
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return (
            f"expected a mapping, got a {yaml_type_name(value)} ({_short_repr(value)}); "
            f"fix the value"
        )
    message = detail["msg"][:1].lower() + detail["msg"][1:]
    return f"invalid value {_short_repr(value)}: {_one_line(message)}{_type_hint(kind, value)}"


def _type_hint(kind: str, value: Any) -> str:
    """Return the usual fix for a YAML value that parsed to the wrong type, or ''."""
    if kind in ("int_type", "float_type") and isinstance(value, str):
        return "; write the number without quotes"
    if kind == "bool_type":
        return "; write true or false"
    if kind == "string_type" and isinstance(value, (bool, type(None))):
        return "; put the value in quotes"
    return ""


def _short_repr(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
