"""Batch norms folded into the convolution before them: same outputs, no batch norm left."""

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from ravlm_graph.utils.inference import fuse_conv_batchnorm_  # noqa: E402


class _ConvBN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(4, 6, 3, padding=1, groups=2, bias=False)
        self.bn = nn.BatchNorm2d(6)

    def forward(self, x):
        return self.bn(self.conv(x))


def _randomise_stats(model):
    g = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g))
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.randn(m.num_features, generator=g))
            m.bias.data.copy_(torch.randn(m.num_features, generator=g))


def test_fused_model_gives_the_same_outputs_without_batch_norms():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2, padding=1), nn.BatchNorm2d(4), nn.ReLU(), _ConvBN(),
                          nn.BatchNorm2d(6))  # the last batch norm follows no convolution: kept
    _randomise_stats(model)
    model.eval()
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        want = model(x)
        assert fuse_conv_batchnorm_(model) == 2
        got = model(x)
    assert torch.allclose(want, got, atol=1e-5)
    kinds = [type(m) for m in model.modules()]
    assert kinds.count(nn.BatchNorm2d) == 1 and kinds.count(nn.Identity) == 2
    assert not model.training
    assert fuse_conv_batchnorm_(model) == 0  # nothing left to fold
