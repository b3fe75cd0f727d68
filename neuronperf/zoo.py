"""Small real models built from code with seeded random weights, for sweeps and tests.

Nothing is downloaded: every architecture is written here (or, for ``bert`` and ``gpt2``,
taken from ``transformers`` and built from its config). The same arguments and seed give the same weights
in every process, so a compiled artifact can be checked against the eager model. Each factory
returns a model in eval mode. torch, transformers and tensorflow are imported inside the
factories, so ``import neuronperf.zoo`` stays light.
"""

from __future__ import annotations

import math
from typing import Any

from neuronperf.errors import ModelLoadError

#: Libraries besides the framework that a factory's model is built by: their version changes
#: the model, so it goes into the environment fingerprint of a sweep that uses the factory.
BUILDS_ON: dict[str, tuple[str, ...]] = {"bert": ("transformers",), "gpt2": ("transformers",)}


def mlp(in_features: int = 128, hidden: int = 256, out_features: int = 10, layers: int = 2, seed: int = 0) -> Any:
    """A multi-layer perceptron: ``layers`` hidden Linear+ReLU blocks, then a Linear head.

    Input ``(batch, in_features)`` float32; output ``(batch, out_features)``."""
    _check_positive("mlp", in_features=in_features, hidden=hidden, out_features=out_features, layers=layers)
    torch = _import_torch("mlp")
    nn = torch.nn
    with _seeded(torch, seed):
        blocks: list[Any] = []
        width = in_features
        for _ in range(layers):
            blocks += [nn.Linear(width, hidden), nn.ReLU()]
            width = hidden
        blocks.append(nn.Linear(width, out_features))
        model = nn.Sequential(*blocks)
    return model.eval()


def small_cnn(channels: int = 3, image_size: int = 32, num_classes: int = 10, seed: int = 0) -> Any:
    """Two conv/batch-norm/ReLU/max-pool stages and a Linear classifier.

    Input ``(batch, channels, image_size, image_size)`` float32; output ``(batch, num_classes)``."""
    _check_positive("small_cnn", channels=channels, image_size=image_size, num_classes=num_classes)
    if image_size < 4:
        raise ModelLoadError(f"zoo.small_cnn: image_size must be at least 4 (two 2x2 poolings), got {image_size}")
    torch = _import_torch("small_cnn")
    nn = torch.nn
    side = image_size // 4
    with _seeded(torch, seed):
        model = nn.Sequential(
            nn.Conv2d(channels, 16, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(16),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(16, 32, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(32),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(32 * side * side, num_classes),
        )
        _randomize_batchnorm(torch, model)
    return model.eval()


def resnet50(num_classes: int = 1000, seed: int = 0) -> Any:
    """ResNet-50 (He et al. 2015, bottleneck blocks 3-4-6-3, stride on the 3x3 conv).

    Input ``(batch, 3, 224, 224)`` float32; output ``(batch, num_classes)``. About 25.6 M
    parameters with 1000 classes, the standard size."""
    _check_positive("resnet50", num_classes=num_classes)
    torch = _import_torch("resnet50")
    with _seeded(torch, seed):
        model = _build_resnet(torch, blocks=(3, 4, 6, 3), num_classes=num_classes)
        _randomize_batchnorm(torch, model)
    return model.eval()


def bert(
    vocab_size: int = 30522,
    hidden_size: int = 768,
    num_hidden_layers: int = 12,
    num_attention_heads: int = 12,
    intermediate_size: int = 3072,
    max_position_embeddings: int = 512,
    seed: int = 0,
    **config: Any,
) -> Any:
    """A ``transformers`` BertModel built from a BertConfig (bert-base sizes by default).

    Called as ``model(input_ids, attention_mask)`` (both int64, ``(batch, seq_len)``); returns
    a tuple ``(last_hidden_state, pooler_output)``, since ``return_dict`` is off for tracing.
    Extra keyword arguments go to BertConfig."""
    torch = _import_torch("bert")
    try:
        from transformers import BertConfig, BertModel
    except ImportError as e:
        raise ModelLoadError(f"zoo.bert needs transformers ({e}); install with: pip install transformers") from e
    if hidden_size % num_attention_heads:
        raise ModelLoadError(
            f"zoo.bert: hidden_size ({hidden_size}) must be a multiple of num_attention_heads ({num_attention_heads})"
        )
    try:
        bert_config = BertConfig(
            vocab_size=vocab_size,
            hidden_size=hidden_size,
            num_hidden_layers=num_hidden_layers,
            num_attention_heads=num_attention_heads,
            intermediate_size=intermediate_size,
            max_position_embeddings=max_position_embeddings,
            **config,
        )
    except (TypeError, ValueError) as e:
        raise ModelLoadError(f"zoo.bert: invalid BertConfig arguments: {e}") from e
    with _seeded(torch, seed):
        model = BertModel(bert_config)
    # transformers 5.x ignores torchscript=True; tracers need tuples, not ModelOutput dicts.
    model.config.return_dict = False
    return model.eval()


def gpt2(
    vocab_size: int = 50257,
    n_positions: int = 1024,
    n_embd: int = 768,
    n_layer: int = 12,
    n_head: int = 12,
    seed: int = 0,
    **config: Any,
) -> Any:
    """A ``transformers`` GPT2LMHeadModel (a causal LM that can ``generate``) built from a
    GPT2Config, GPT-2 small sizes by default, for ``task: generate`` sweeps. Extra keyword
    arguments go to GPT2Config."""
    torch = _import_torch("gpt2")
    try:
        from transformers import GPT2Config, GPT2LMHeadModel
    except ImportError as e:
        raise ModelLoadError(f"zoo.gpt2 needs transformers ({e}); install with: pip install transformers") from e
    _check_positive("gpt2", vocab_size=vocab_size, n_positions=n_positions, n_embd=n_embd, n_layer=n_layer, n_head=n_head)
    if n_embd % n_head:
        raise ModelLoadError(f"zoo.gpt2: n_embd ({n_embd}) must be a multiple of n_head ({n_head})")
    # GPT-2's special tokens are id 50256; a smaller vocabulary takes its last id instead.
    for special in ("bos_token_id", "eos_token_id"):
        config.setdefault(special, min(50256, vocab_size - 1))
    try:
        gpt2_config = GPT2Config(vocab_size=vocab_size, n_positions=n_positions, n_embd=n_embd, n_layer=n_layer,
                                 n_head=n_head, **config)
    except (TypeError, ValueError) as e:
        raise ModelLoadError(f"zoo.gpt2: invalid GPT2Config arguments: {e}") from e
    with _seeded(torch, seed):
        model = GPT2LMHeadModel(gpt2_config)
    return model.eval()


def bert_like(vocab_size: int = 1000, hidden: int = 128, layers: int = 2, heads: int = 4, max_len: int = 512, seed: int = 0) -> Any:
    """A BERT-style encoder in plain torch (no transformers): token + position embeddings and
    pre-norm self-attention blocks.

    Called as ``model(input_ids)`` or ``model(input_ids, attention_mask)`` (int64,
    ``(batch, seq_len)``; mask 1 = attend, 0 = padding); returns ``(batch, seq_len, hidden)``."""
    _check_positive("bert_like", vocab_size=vocab_size, hidden=hidden, layers=layers, heads=heads, max_len=max_len)
    if hidden % heads:
        raise ModelLoadError(f"zoo.bert_like: hidden ({hidden}) must be a multiple of heads ({heads})")
    torch = _import_torch("bert_like")
    with _seeded(torch, seed):
        model = _build_encoder(torch, vocab_size, hidden, layers, heads, max_len)
    return model.eval()


def keras_mlp(in_features: int = 128, hidden: int = 256, out_features: int = 10, layers: int = 2, seed: int = 0) -> Any:
    """The ``mlp`` architecture as a Keras model, for the tensorflow backends.

    Input ``(batch, in_features)`` float32; output ``(batch, out_features)``."""
    _check_positive("keras_mlp", in_features=in_features, hidden=hidden, out_features=out_features, layers=layers)
    try:
        import tensorflow as tf
    except ImportError as e:
        raise ModelLoadError(f"zoo.keras_mlp needs tensorflow ({e}); install with: pip install tensorflow-cpu") from e
    keras = tf.keras
    layer_list: list[Any] = [keras.Input(shape=(in_features,), dtype="float32")]
    for i in range(layers):
        init = keras.initializers.GlorotUniform(seed=seed + i)
        layer_list.append(keras.layers.Dense(hidden, activation="relu", kernel_initializer=init))
    head_init = keras.initializers.GlorotUniform(seed=seed + layers)
    layer_list.append(keras.layers.Dense(out_features, kernel_initializer=head_init))
    return keras.Sequential(layer_list)


# ---- building blocks ----------------------------------------------------------------------------


def _build_resnet(torch: Any, blocks: tuple[int, ...], num_classes: int) -> Any:
    nn = torch.nn

    class Bottleneck(nn.Module):  # type: ignore[name-defined]  # torch is imported lazily
        expansion = 4

        def __init__(self, in_ch: int, width: int, stride: int):
            super().__init__()
            out_ch = width * self.expansion
            self.conv1 = nn.Conv2d(in_ch, width, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(width)
            self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False)
            self.bn2 = nn.BatchNorm2d(width)
            self.conv3 = nn.Conv2d(width, out_ch, 1, bias=False)
            self.bn3 = nn.BatchNorm2d(out_ch)
            self.relu = nn.ReLU(inplace=True)
            self.downsample = None
            if stride != 1 or in_ch != out_ch:
                self.downsample = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False), nn.BatchNorm2d(out_ch))

        def forward(self, x: Any) -> Any:
            identity = x if self.downsample is None else self.downsample(x)
            out = self.relu(self.bn1(self.conv1(x)))
            out = self.relu(self.bn2(self.conv2(out)))
            out = self.bn3(self.conv3(out))
            return self.relu(out + identity)

    class ResNet(nn.Module):  # type: ignore[name-defined]  # torch is imported lazily
        def __init__(self) -> None:
            super().__init__()
            self.stem = nn.Sequential(
                nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False),
                nn.BatchNorm2d(64),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(3, stride=2, padding=1),
            )
            stages = []
            in_ch = 64
            for i, count in enumerate(blocks):
                width = 64 * 2**i
                stage = []
                for j in range(count):
                    stage.append(Bottleneck(in_ch, width, stride=2 if (j == 0 and i > 0) else 1))
                    in_ch = width * Bottleneck.expansion
                stages.append(nn.Sequential(*stage))
            self.stages = nn.Sequential(*stages)
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(in_ch, num_classes)
            for m in self.modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

        def forward(self, x: Any) -> Any:
            x = self.stages(self.stem(x))
            return self.fc(torch.flatten(self.pool(x), 1))

    return ResNet()


def _build_encoder(torch: Any, vocab_size: int, hidden: int, layers: int, heads: int, max_len: int) -> Any:
    nn = torch.nn
    functional = torch.nn.functional

    class EncoderBlock(nn.Module):  # type: ignore[name-defined]  # torch is imported lazily
        def __init__(self) -> None:
            super().__init__()
            self.norm1 = nn.LayerNorm(hidden)
            self.qkv = nn.Linear(hidden, 3 * hidden)
            self.proj = nn.Linear(hidden, hidden)
            self.norm2 = nn.LayerNorm(hidden)
            self.ffn = nn.Sequential(nn.Linear(hidden, 4 * hidden), nn.GELU(), nn.Linear(4 * hidden, hidden))

        def forward(self, x: Any, mask: Any) -> Any:
            batch, seq, _ = x.shape
            q, k, v = self.qkv(self.norm1(x)).chunk(3, dim=-1)
            q, k, v = (t.reshape(batch, seq, heads, hidden // heads).transpose(1, 2) for t in (q, k, v))
            # Written out rather than scaled_dot_product_attention so that every exporter
            # (TorchScript, torch.export, ONNX opset 14+) sees the same plain ops.
            scores = q @ k.transpose(-2, -1) / math.sqrt(hidden // heads)
            if mask is not None:
                scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
            attended = (functional.softmax(scores, dim=-1) @ v).transpose(1, 2).reshape(batch, seq, hidden)
            x = x + self.proj(attended)
            return x + self.ffn(self.norm2(x))

    class Encoder(nn.Module):  # type: ignore[name-defined]  # torch is imported lazily
        def __init__(self) -> None:
            super().__init__()
            self.tokens = nn.Embedding(vocab_size, hidden)
            self.positions = nn.Embedding(max_len, hidden)
            self.blocks = nn.ModuleList([EncoderBlock() for _ in range(layers)])
            self.norm = nn.LayerNorm(hidden)

        def forward(self, input_ids: Any, attention_mask: Any = None) -> Any:
            positions = torch.arange(input_ids.shape[1], device=input_ids.device)
            x = self.tokens(input_ids) + self.positions(positions)
            mask = None
            if attention_mask is not None:
                mask = (attention_mask != 0)[:, None, None, :]  # (batch, 1, 1, seq): keys to attend
            for block in self.blocks:
                x = block(x, mask)
            return self.norm(x)

    return Encoder()


def _randomize_batchnorm(torch: Any, model: Any) -> None:
    # Fresh batch-norm layers are the identity in eval mode; random running statistics make
    # the layers do real work, so a compiler that folds them wrongly is caught by comparisons.
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            with torch.no_grad():
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.1, 0.1)


class _seeded:
    """Seed torch's CPU generator for the duration of a model build, restoring it afterwards,
    so that building a model does not change the caller's random stream."""

    def __init__(self, torch: Any, seed: int):
        self._torch = torch
        self._seed = seed

    def __enter__(self) -> None:
        self._state = self._torch.random.get_rng_state()
        self._torch.manual_seed(self._seed)

    def __exit__(self, *exc: object) -> None:
        self._torch.random.set_rng_state(self._state)


def _import_torch(factory: str) -> Any:
    try:
        import torch
    except ImportError as e:
        raise ModelLoadError(f"zoo.{factory} needs torch ({e}); install with: pip install torch") from e
    return torch


def _check_positive(factory: str, **values: Any) -> None:
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ModelLoadError(f"zoo.{factory}: {name} must be a positive integer, got {value!r}")
