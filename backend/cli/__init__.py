"""The ``steadytalk`` command line. Thin: parses arguments, calls the library, reports.

One module per command group (``lipsync``, ``performance``, ``avatar``, ``render``, ``portrait``, ``service``,
``evaluation``), each registering its sub-commands with their handler; ``common`` holds what
they share. On top of every room: may import any of them, lazily inside the handlers, so
``--help`` stays fast. User errors end with ``error: <what went wrong> <what to do>`` and exit
status 2, never a traceback; ``STEADYTALK_DEBUG=1`` shows the traceback for bug reports.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from .. import __version__
from ..errors import SteadyTalkError
from . import avatar, evaluation, lipsync, performance, portrait, render, service

GROUPS = (lipsync, performance, avatar, render, portrait, service, evaluation)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="steadytalk", description="Motion-stable audio-driven facial animation.")
    parser.add_argument("--version", action="version", version=f"steadytalk {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for group in GROUPS:
        group.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.handler(args)
    except (SteadyTalkError, ValueError, OSError) as exc:
        if os.environ.get("STEADYTALK_DEBUG"):
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
