"""``python -m controller.report SESSION_DIR [...]``: (re)build session reports."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from controller.report.build import build_report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m controller.report", description=__doc__)
    parser.add_argument("sessions", nargs="+", type=Path, help="session folder(s)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    failed = 0
    for session in args.sessions:
        try:
            print(build_report(session))
        except (FileNotFoundError, ValueError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            failed += 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
