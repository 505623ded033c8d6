"""Inference-only rewrites of trained torch modules (same outputs, less work per call)."""

from __future__ import annotations

__all__ = ["for_cpu_inference", "fuse_conv_batchnorm_"]


def fuse_conv_batchnorm_(module):
    """Fold each batch norm that directly follows a convolution into that convolution, in place.

    Two patterns are fused: consecutive ``Conv2d`` -> ``BatchNorm2d`` children of an
    ``nn.Sequential``, and a module with ``conv`` and ``bn`` attributes that applies them in
    that order. The batch norm becomes an ``nn.Identity``, so the outputs stay the same in eval
    mode (float rounding aside) with one layer less; the module is put in eval mode and is
    for inference only afterwards (a batch norm's statistics no longer update).

    Returns:
        int: the number of batch norms folded.
    """
    from torch import nn
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    module.eval()
    n = 0
    for m in list(module.modules()):
        if isinstance(m, nn.Sequential):
            kids = list(m)
            for i in range(len(kids) - 1):
                if isinstance(kids[i], nn.Conv2d) and isinstance(kids[i + 1], nn.BatchNorm2d):
                    m[i] = fuse_conv_bn_eval(kids[i], kids[i + 1])
                    m[i + 1] = nn.Identity()
                    n += 1
        elif isinstance(getattr(m, "conv", None), nn.Conv2d) and isinstance(getattr(m, "bn", None), nn.BatchNorm2d):
            m.conv = fuse_conv_bn_eval(m.conv, m.bn)
            m.bn = nn.Identity()
            n += 1
    return n


def for_cpu_inference(module):
    """A trained convolutional network made ready for inference on CPU, in place: batch norms
    folded (:func:`fuse_conv_batchnorm_`), eval mode, channels-last layout (feed it
    ``x.contiguous(memory_format=torch.channels_last)``; depthwise convolutions run faster so).
    Returns the module."""
    import torch

    fuse_conv_batchnorm_(module)
    return module.to(memory_format=torch.channels_last)
