"""The ``headend`` command line: the one place errors become user-facing text."""

import argparse
import sys

from headend import __version__


def build_parser():
    parser = argparse.ArgumentParser(
        prog="headend",
        description="Smart-meter head-end: ingest, VEE, billing, prepaid, alerts.",
    )
    parser.add_argument("--version", action="version", version="headend " + __version__)
    parser.add_argument("--db", default="headend.db", help="SQLite database file (default headend.db)")
    parser.add_subparsers(dest="command", metavar="COMMAND")
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
