"""The ``cardiovlm`` command line: thin subcommands that parse, call the library, and print.

Each subcommand is a module of this package exposing ``register(subparsers)``
(adds its parser and sets ``func``). Modules are listed here once; they import heavy libraries only
inside their ``func``, so ``cardiovlm --help`` stays fast. Library errors that carry a user message
(``ValueError`` subclasses) become one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from cardiovlm.tools.core.settings import NO_TELEMETRY, OFFLINE_HUB, set_library_environment

# Keep third-party telemetry off before anything imports gradio, chromadb or TotalSegmentator.
set_library_environment(NO_TELEMETRY | OFFLINE_HUB)

SUBCOMMAND_MODULES = (
    "cardiovlm.ui.cli.phantoms",  # phantoms
    "cardiovlm.ui.cli.ingest",  # ingest
    "cardiovlm.ui.cli.demo",  # demo
    "cardiovlm.ui.cli.quantify",  # calcium, measure, stent
    "cardiovlm.ui.cli.train",  # train
    "cardiovlm.ui.cli.evaluate",  # evaluate
    "cardiovlm.ui.cli.reports",  # reports
    "cardiovlm.ui.cli.curriculum",  # curriculum
    "cardiovlm.ui.cli.ask",  # ask
    "cardiovlm.ui.cli.pacs",  # pacs search|load|send
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cardiovlm",
        description="CardioVLM: anatomically aware assistant for coronary CT (research use only, "
        "not for clinical use).",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module_name in SUBCOMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result = args.func(args)
    except ValueError as err:  # our typed errors all derive from ValueError and carry the message
        print(f"cardiovlm {args.command}: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
