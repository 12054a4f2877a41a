"""Write config/services.schema.json from the pydantic models of services.yaml.

With --check, write nothing and exit with status 1 when the file differs from the models.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rollback_coordinator.core.services import services_json_schema

DEFAULT_OUTPUT = Path(__file__).resolve().parents[1] / "config" / "services.schema.json"


def render_schema() -> str:
    """Return the schema as pretty JSON with sorted keys and a trailing newline."""
    return json.dumps(services_json_schema(), indent=2, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--check",
        action="store_true",
        help="exit with status 1 if the schema file is missing or stale, without writing it",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=DEFAULT_OUTPUT,
        help=f"schema file to write or check (default: {DEFAULT_OUTPUT})",
    )
    arguments = parser.parse_args(argv)
    expected = render_schema()
    if arguments.check:
        try:
            current = arguments.output.read_text(encoding="utf-8")
        except FileNotFoundError:
            current = None
        if current != expected:
            print(
                f"{arguments.output} is stale or missing; run python tools/generate_schema.py "
                f"and commit the result",
                file=sys.stderr,
            )
            return 1
        return 0
    arguments.output.parent.mkdir(parents=True, exist_ok=True)
    arguments.output.write_text(expected, encoding="utf-8")
    print(f"wrote {arguments.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
