"""Rollback order of services: dependents first, dependencies last.

A service is rolled back only after every touched service that depends on it, directly or
through services the batch did not touch. Services with no order between them share a level
and run in parallel.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping


def transitive_dependents(dependencies: Mapping[str, Iterable[str]]) -> dict[str, set[str]]:
    """Map each service to every service that depends on it, directly or indirectly."""
    direct: dict[str, set[str]] = {name: set() for name in dependencies}
    for name, needs in dependencies.items():
        for needed in needs:
            direct.setdefault(needed, set()).add(name)

    closure: dict[str, set[str]] = {}
    for name in direct:
        seen: set[str] = set()
        stack = list(direct[name])
        while stack:
            current = stack.pop()
            if current in seen:
                continue
            seen.add(current)
            stack.extend(direct.get(current, ()))
        closure[name] = seen
    return closure


def rollback_order(
    touched: Iterable[str], dependencies: Mapping[str, Iterable[str]]
) -> tuple[dict[str, int], dict[str, list[str]]]:
    """Return the level of each touched service and the services each must wait for.

    Level 0 rolls back first. The waits are the transitive reduction of the order, so the
    DAG shows only the edges that matter.
    """
    touched_set = set(touched)
    dependents = transitive_dependents(dependencies)
    must_wait = {
        name: sorted(dependents.get(name, set()) & touched_set) for name in sorted(touched_set)
    }

    levels: dict[str, int] = {}

    def level_of(name: str) -> int:
        if name not in levels:
            levels[name] = 1 + max((level_of(other) for other in must_wait[name]), default=-1)
        return levels[name]

    for name in must_wait:
        level_of(name)

    reduced = {
        name: [
            other
            for other in waits
            if not any(other in must_wait[middle] for middle in waits if middle != other)
        ]
        for name, waits in must_wait.items()
    }
    return levels, reduced
