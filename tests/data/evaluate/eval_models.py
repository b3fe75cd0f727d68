"""A small classifier and datasets whose true accuracy is known by construction (evaluate tests).

The classifier's logits are its input's first two features (a real Linear layer with fixed
weights), so its prediction is ``argmax(x[:, :2])``; ``dataset()`` labels 8 of its 10 batches with
that prediction and 2 with the other class: accuracy is exactly 0.8.
"""

from __future__ import annotations

import torch

FEATURES = 4
BATCH = 4
ITEMS = 10
WRONG_ITEMS = 2
TRUE_ACCURACY = (ITEMS - WRONG_ITEMS) / ITEMS


def classifier() -> torch.nn.Module:
    layer = torch.nn.Linear(FEATURES, 2, bias=False)
    with torch.no_grad():
        layer.weight.zero_()
        layer.weight[0, 0] = 1.0
        layer.weight[1, 1] = 1.0
    return layer.eval()


def dataset() -> list:
    generator = torch.Generator().manual_seed(0)
    items = []
    for i in range(ITEMS):
        x = torch.randn(BATCH, FEATURES, generator=generator)
        predicted = x[:, :2].argmax(dim=1)
        target = predicted if i < ITEMS - WRONG_ITEMS else 1 - predicted
        items.append((x, target))
    return items


def not_tuples() -> list:
    return [[x, t] for x, t in dataset()]
