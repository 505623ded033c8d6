"""A toy model and data for the training-loop tests (importable by torchrun workers)."""

from dataclasses import dataclass

import torch
from torch import nn

from ravlm_graph.utils.checkpoint import write_checkpoint


@dataclass
class ToyOutput:
    loss: torch.Tensor


class ToyModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = nn.Linear(4, 8)
        self.head = nn.Linear(8, 1)

    def forward(self, batch):
        x, y = batch
        pred = self.head(torch.tanh(self.backbone(x))).squeeze(-1)
        return ToyOutput(loss=((pred - y) ** 2).mean())

    def freeze_backbone(self):
        for p in self.backbone.parameters():
            p.requires_grad_(False)

    def save_pretrained(self, path):
        write_checkpoint(path, {"kind": "toy"}, self.state_dict(), format_name="toy", format_version=1)


def toy_data(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    y = x @ torch.tensor([1.0, -2.0, 0.5, 0.0]) + 0.1
    return [(x[i], y[i]) for i in range(n)]


def collate(items):
    return torch.stack([a for a, _ in items]), torch.stack([b for _, b in items])
