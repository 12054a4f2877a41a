"""Argument parsing and dispatch for the rollback-coordinator console script."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from rollback_coordinator import __version__
from rollback_coordinator.cli import approve, audit, execute, plan, status
from rollback_coordinator.cli.output import (
    EXIT_AIRFLOW_API,
    EXIT_BROKEN_CHAIN,
    EXIT_INVALID,
    EXIT_REFUSED,
    EXIT_RUN_FAILED,
    EXIT_USAGE,
    Printer,
)
from rollback_coordinator.core.errors import ConfigError, CoordinatorError, PlanError

EPILOG = f"""\
exit codes:
  0  success
  {EXIT_RUN_FAILED}  the rollback run failed
  {EXIT_USAGE}  invalid command line
  {EXIT_INVALID}  invalid input: a configuration file, a plan file, a batch id, a repository
  {EXIT_REFUSED}  refused: an overlapping newer batch, a changed plan, an approval not allowed
  {EXIT_BROKEN_CHAIN}  audit verify found a changed, missing, reordered or badly signed record
  {EXIT_AIRFLOW_API}  the Airflow REST API is unreachable or refused the request

Configuration is read from ROLLBACK_CONFIG_DIR, data from ROLLBACK_DATA_DIR.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rollback-coordinator",
        description="Plan, run and inspect governed rollbacks of deployment batches.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (plan, execute, status, approve, audit):
        sub = module.add_parser(commands)
        sub.add_argument("--json", action="store_true", help="print one JSON object for scripts")
        sub.set_defaults(run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    printer = Printer(args.json)
    try:
        return args.run(args, printer)
    except PlanError as error:
        return printer.error(str(error), EXIT_REFUSED)
    except ConfigError as error:
        return printer.error(str(error), EXIT_INVALID)
    except CoordinatorError as error:
        return printer.error(str(error), getattr(error, "exit_code", EXIT_INVALID))
    except OSError as error:
        where = f" {error.filename}" if error.filename else ""
        return printer.error(
            f"cannot read or write{where}: {error.strerror or error}; check the path and its "
            f"permissions (ROLLBACK_DATA_DIR, --out)",
            EXIT_INVALID,
        )
    except KeyboardInterrupt:
        return printer.error("interrupted", EXIT_RUN_FAILED)


if __name__ == "__main__":
    sys.exit(main())
