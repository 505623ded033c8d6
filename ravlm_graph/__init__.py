"""ravlm_graph: knowledge-graph-grounded reasoning for vision-language models."""
__version__ = "0.1.0"
