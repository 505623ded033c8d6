"""One training loop for every model (detectors too): seeded, resumable, torchrun DDP."""

from ravlm_graph.training.loop import TrainConfig, TrainResult, seed_everything, train

__all__ = ["TrainConfig", "TrainResult", "seed_everything", "train"]
