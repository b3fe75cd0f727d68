"""Models for the generation tests: a real tiny GPT-2, and causal LMs that break the contract."""

from __future__ import annotations

import torch

from neuronperf import zoo

VOCAB = 100


def tiny_gpt2(n_positions: int = 64) -> torch.nn.Module:
    return zoo.gpt2(vocab_size=VOCAB, n_positions=n_positions, n_embd=32, n_layer=1, n_head=2)


class _StopsEarly(torch.nn.Module):
    """A 'causal LM' whose generate hands over one token fewer than asked, as one that stops at
    an end-of-sequence token would."""

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return input_ids

    def generate(self, input_ids: torch.Tensor, max_new_tokens: int, streamer=None, **kwargs) -> torch.Tensor:
        out = input_ids
        if streamer is not None:
            streamer.put(input_ids)
        for _ in range(max_new_tokens - 1):
            token = torch.zeros(input_ids.shape[0], 1, dtype=input_ids.dtype)
            out = torch.cat([out, token], dim=1)
            if streamer is not None:
                streamer.put(token[:, 0])
        if streamer is not None:
            streamer.end()
        return out


def stops_early() -> torch.nn.Module:
    return _StopsEarly()


def linear() -> torch.nn.Module:
    """A model that cannot generate."""
    return torch.nn.Linear(8, 8)
