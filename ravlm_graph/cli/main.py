"""``ravlm``: the engine's command line.

Each command group lives in its own module exposing ``register(subparsers)``;
the module is imported only when the CLI starts, and a command's heavy imports
happen inside its handler.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

# Modules that contribute sub-commands (each defines ``register(subparsers)``,
# which adds parsers whose ``func(args) -> int`` runs the command).
COMMAND_MODULES = (
    "ravlm_graph.cli.data",
    "ravlm_graph.cli.retrieve",
    "ravlm_graph.cli.engine",
)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ravlm", description="Knowledge-graph-grounded VQA engine.")
    p.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in COMMAND_MODULES:
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
        # Its options live with the model (ravlm_graph.csqa), which needs torch at import:
        # parsed there, so that other commands start without importing torch.
        from ravlm_graph.cli.csqa import main as csqa_main

        return csqa_main(rest[2:], prog="ravlm bench csqa")
    args = build_parser().parse_args(argv)
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
