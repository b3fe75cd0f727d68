"""Save a DistilBERT-sized checkpoint with random weights to a local folder, for the `hf:` specs.

    python configs/make_distilbert_rand.py            # -> configs/distilbert-rand/
    python configs/make_distilbert_rand.py --out DIR  # elsewhere

The folder is what ``save_pretrained`` writes for ``distilbert-base-uncased``'s architecture
(6 layers, 768 wide, 12 heads, a 30522-token vocabulary, a two-label classification head: 67 M
parameters, 268 MB of float32 safetensors), built from its config with seeded random weights, so
nothing is downloaded and the same command writes the same weights on every machine. Latency does
not depend on the weights' values, so it benchmarks like the real checkpoint.
"""

from __future__ import annotations

import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def make(out: str, layers: int = 6, dim: int = 768, heads: int = 12, vocab_size: int = 30522, seed: int = 0) -> str:
    """Write the checkpoint to ``out`` (created if missing); return the folder."""
    import torch
    from transformers import DistilBertConfig, DistilBertForSequenceClassification

    config = DistilBertConfig(
        vocab_size=vocab_size, dim=dim, n_layers=layers, n_heads=heads, hidden_dim=4 * dim, num_labels=2,
    )
    torch.manual_seed(seed)
    model = DistilBertForSequenceClassification(config).eval()
    model.save_pretrained(out)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.join(HERE, "distilbert-rand"), help="the folder to write (default: configs/distilbert-rand)")
    parser.add_argument("--layers", type=int, default=6, help="transformer layers (DistilBERT: 6)")
    parser.add_argument("--dim", type=int, default=768, help="hidden size (DistilBERT: 768)")
    parser.add_argument("--heads", type=int, default=12, help="attention heads (DistilBERT: 12)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    folder = make(args.out, layers=args.layers, dim=args.dim, heads=args.heads, seed=args.seed)
    print(f"wrote {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
