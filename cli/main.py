"""The `offeropt` console script: one parser, each command group registering its commands.

The service's and the nightly job's commands import Flask, SQLAlchemy and the store only
when they run, so the library's commands (`validate`, `solve`, ...) load neither."""

from __future__ import annotations

import argparse
import os
import sys
import time

from cli import IMPORTED, estimation, logs, measurement, mining, nightly, service, solving, workbench
from cli.exit_codes import ExitCode
from optimizer.errors import InputError, OfferOptError, file_issue


def main(argv: list[str] | None = None) -> int:
    """The console script (`argv` None: the process's command line, whose time limit counts
    from the process's start), or one command run in-process (counted from this call)."""
    return run(build_parser(), argv, IMPORTED if argv is None else time.monotonic())


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="offeropt", description="Offer optimization: which bundles, "
                                "at what discount or perk, for every customer segment.",
                                epilog="File formats (instances, plans, exposures logs): "
                                "docs/formats.md in the offeropt repository.")
    sub = p.add_subparsers(required=True, metavar="COMMAND")
    for group in (solving, estimation, service, nightly, logs, measurement, mining, workbench):
        group.register(sub)
    return p


def run(parser: argparse.ArgumentParser, argv: list[str] | None, started: float) -> int:
    """Parse, run the chosen command, and turn offeropt's errors into exit codes; `started`
    (monotonic) is when the command began: its time limit counts from there."""
    args = parser.parse_args(argv)
    args.started = started
    try:
        code: int = args.run(args)
        return code
    except InputError as exc:
        print(f"input error ({len(exc.issues)} issue{'s' * (len(exc.issues) != 1)}):",
              file=sys.stderr)
        print(exc.describe(), file=sys.stderr)
        return ExitCode.INPUT_ERROR
    except OfferOptError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return ExitCode.ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return ExitCode.INTERRUPTED
    except BrokenPipeError:  # the reader (`| head`) has gone: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return ExitCode.OK
    except OSError as exc:  # a file the readers and writers did not name themselves
        issue = file_issue(exc.filename or "file", exc, "must be accessible")
        print(f"input error (1 issue):\n{issue}", file=sys.stderr)
        return ExitCode.INPUT_ERROR
