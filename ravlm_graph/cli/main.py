"""``ravlm``: the engine's command line.

Each command group lives in its own module exposing ``register(subparsers)``. Only the
module of the command being run is imported (``ravlm retrieve`` never loads the model
code); ``ravlm --help`` imports them all to list every command.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

# Command -> the module that registers it (``register(subparsers)`` adds parsers whose
# ``func(args) -> int`` runs the command).
COMMANDS = {
    "data": "ravlm_graph.cli.data",
    "ground": "ravlm_graph.cli.retrieve",
    "retrieve": "ravlm_graph.cli.retrieve",
    "train": "ravlm_graph.cli.train",
    "answer": "ravlm_graph.cli.answer",
    "export": "ravlm_graph.cli.answer",
    "bench": "ravlm_graph.cli.bench",
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser of one command (its module only), or of all when ``command`` is None."""
    p = argparse.ArgumentParser(prog="ravlm", description="Knowledge-graph-grounded VQA engine.")
    p.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = p.add_subparsers(dest="cmd", required=True)
    modules = [COMMANDS[command]] if command in COMMANDS else list(dict.fromkeys(COMMANDS.values()))
    for name in modules:
        try:
            mod = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name == name:  # that command group is not part of this build
                continue
            raise
        mod.register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    rest = [a for a in argv if a not in ("-v", "--verbose")]
    if rest[:2] == ["bench", "csqa"]:
        # Its options are defined beside the CommonsenseQA runner (ravlm_graph.cli.csqa).
        csqa = importlib.import_module("ravlm_graph.cli.csqa")
        return csqa.main(rest[2:], prog="ravlm bench csqa")
    command = next((a for a in rest if not a.startswith("-")), None)
    args = build_parser(command).parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except (ValueError, KeyError, FileNotFoundError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"ravlm: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ravlm: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
