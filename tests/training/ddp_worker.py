"""Run by torchrun in the DDP test: trains the toy model on 2 CPU processes."""

import json
import sys

import torch

from ravlm_graph.training.loop import TrainConfig, train
from tests.training.toy import ToyModel, collate, toy_data

out = sys.argv[1]
torch.manual_seed(0)
model = ToyModel()
res = train(model, toy_data(), collate, TrainConfig(out_dir=out, epochs=3, batch_size=8, lr=0.05, progress=False))
rank = torch.distributed.get_rank()
with open(f"{out}/rank{rank}.json", "w") as f:
    json.dump({"losses": res.losses, "w": model.head.weight.detach().flatten().tolist()}, f)
