"""``ravlm``: the engine's command line, one module per command group."""

from ravlm_graph.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
