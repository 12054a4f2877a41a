"""Git-style path globs over repository-relative file paths, translated to regular expressions.

ServiceSettings.paths uses them to decide which services a batch touches.
"""

from __future__ import annotations

import re
from functools import lru_cache

class GlobError(ValueError):
    """A path glob that cannot be translated. Its message names the glob and the fix."""


def glob_to_regex(glob: str) -> str:
    """Translate a git-style glob over repository-relative file paths to a regex.

    ``**`` as a whole segment matches any number of directories (``a/**`` matches every
    file below ``a``), ``*`` and ``?`` never match '/', ``[...]`` is a character class
    (``[!...]`` or ``[^...]`` negates it) and a backslash escapes the next character.
    A glob is anchored at the repository root, so ``*.sql`` matches only top-level files,
    unlike a .gitignore line. Use the result with ``re.fullmatch`` and ``re.DOTALL``.
    """
    _check_glob_shape(glob)
    segments = glob.split("/")
    last = len(segments) - 1
    regex = ""
    needs_separator = False
    for index, segment in enumerate(segments):
        separator = "/" if needs_separator else ""
        if segment == "**" and index == last:
            regex += separator + ".+"
        elif segment == "**":
            regex += separator + "(?:.+/)?"
            needs_separator = False
        else:
            regex += separator + _translate_segment(segment, glob)
            needs_separator = True
    return regex


def _check_glob_shape(glob: str) -> None:
    if not glob:
        raise GlobError("empty glob; remove it or write a pattern such as 'db/**'")
    if glob.startswith("/"):
        raise GlobError(
            f"glob {glob!r} is absolute; write it relative to the repository root, "
            f"such as {glob.lstrip('/')!r}"
        )
    for segment in glob.split("/"):
        if segment in ("", ".", ".."):
            raise GlobError(
                f"glob {glob!r} contains an empty, '.' or '..' segment, which never matches "
                f"a changed file path; write a normalized path such as 'db/**'"
            )


def _translate_segment(segment: str, glob: str) -> str:
    parts: list[str] = []
    index = 0
    while index < len(segment):
        char = segment[index]
        if char == "*":
            # Stars inside a segment ("a**b") behave like a single star, as in git.
            while index + 1 < len(segment) and segment[index + 1] == "*":
                index += 1
            parts.append("[^/]*")
        elif char == "?":
            parts.append("[^/]")
        elif char == "[":
            character_class, index = _translate_class(segment, index, glob)
            parts.append(character_class)
            continue
        elif char == "\\":
            if index + 1 == len(segment):
                raise GlobError(
                    f"glob {glob!r} ends a segment with a lone backslash; write '\\\\' "
                    f"for a literal backslash"
                )
            index += 1
            parts.append(re.escape(segment[index]))
        else:
            parts.append(re.escape(char))
        index += 1
    return "".join(parts)


def _translate_class(segment: str, start: int, glob: str) -> tuple[str, int]:
    """Translate the class that opens at ``segment[start]`` and return it with the next index."""
    index = start + 1
    negated = index < len(segment) and segment[index] in "!^"
    if negated:
        index += 1
    body_start = index
    # A ']' right after the opening bracket is a literal member, as in git and fnmatch.
    if index < len(segment) and segment[index] == "]":
        index += 1
    while index < len(segment) and segment[index] != "]":
        index += 2 if segment[index] == "\\" else 1
    if index >= len(segment):
        raise GlobError(
            f"glob {glob!r} has an unclosed '['; close the class with ']', or write '\\[' "
            f"for a literal bracket (a class cannot contain '/')"
        )
    body = segment[body_start:index]
    if "[:" in body:
        raise GlobError(
            f"glob {glob!r} uses a POSIX class such as [:alpha:], which is not supported; "
            f"list the characters instead, such as [a-zA-Z]"
        )
    prefix = "^/" if negated else ""
    return "[" + prefix + _translate_class_body(body) + "]", index + 1


def _translate_class_body(body: str) -> str:
    parts: list[str] = []
    index = 0
    while index < len(body):
        char = body[index]
        if char == "\\" and index + 1 < len(body):
            index += 1
            parts.append(re.escape(body[index]))
        elif char == "-" and 0 < index < len(body) - 1:
            parts.append("-")
        else:
            parts.append(re.escape(char))
        index += 1
    return "".join(parts)


@lru_cache(maxsize=None)
def compile_globs(globs: tuple[str, ...]) -> re.Pattern[str] | None:
    """Compile globs into one pattern that fully matches a path when any glob does.

    Return None for no globs. Raise GlobError for the first invalid glob.
    """
    if not globs:
        return None
    regexes: list[str] = []
    for glob in globs:
        regex = glob_to_regex(glob)
        try:
            re.compile(regex)
        except re.error as error:
            message = f"glob {glob!r} is invalid ({error}); fix the character class"
            raise GlobError(message) from None
        regexes.append(f"(?:{regex})")
    return re.compile("|".join(regexes), re.DOTALL)
