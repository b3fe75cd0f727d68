"""The model zoo: real architectures, the documented shapes, deterministic seeded weights."""

from __future__ import annotations

import sys

import pytest

torch = pytest.importorskip("torch")

from neuronperf import zoo  # noqa: E402
from neuronperf.errors import ModelLoadError  # noqa: E402

TINY_BERT = {"vocab_size": 100, "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64}


def run(model, *inputs):
    with torch.no_grad():
        return model(*inputs)


def same_weights(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_mlp_shapes_and_depth():
    model = zoo.mlp(in_features=12, hidden=20, out_features=3, layers=3)
    assert not model.training
    assert run(model, torch.randn(5, 12)).shape == (5, 3)
    assert sum(isinstance(m, torch.nn.Linear) for m in model.modules()) == 4  # 3 hidden + head


def test_small_cnn_shapes():
    model = zoo.small_cnn(channels=1, image_size=28, num_classes=7)
    assert run(model, torch.randn(2, 1, 28, 28)).shape == (2, 7)


def test_resnet50_is_the_standard_architecture():
    model = zoo.resnet50()
    # The published ResNet-50 with 1000 classes has 25,557,032 parameters.
    assert sum(p.numel() for p in model.parameters()) == 25_557_032
    assert sum(isinstance(m, torch.nn.Conv2d) for m in model.modules()) == 53
    assert run(zoo.resnet50(num_classes=4), torch.randn(1, 3, 64, 64)).shape == (1, 4)


def test_bert_returns_tuples_from_its_config():
    pytest.importorskip("transformers")
    model = zoo.bert(**TINY_BERT, max_position_embeddings=64, type_vocab_size=1)
    assert model.config.return_dict is False and model.config.type_vocab_size == 1
    ids = torch.randint(0, 100, (2, 8))
    hidden, pooled = run(model, ids, torch.ones(2, 8, dtype=torch.int64))
    assert hidden.shape == (2, 8, 32) and pooled.shape == (2, 32)


def test_bert_errors_are_model_load_errors(monkeypatch):
    pytest.importorskip("transformers")
    with pytest.raises(ModelLoadError, match="multiple of num_attention_heads"):
        zoo.bert(hidden_size=30, num_attention_heads=4)
    monkeypatch.setitem(sys.modules, "transformers", None)
    with pytest.raises(ModelLoadError, match="zoo.bert needs transformers.*pip install transformers"):
        zoo.bert(**TINY_BERT)


def test_bert_like_respects_the_attention_mask():
    model = zoo.bert_like(vocab_size=50, hidden=16, layers=2, heads=2, max_len=32)
    ids = torch.randint(0, 50, (1, 10))
    mask = torch.tensor([[1] * 6 + [0] * 4])
    out = run(model, ids, mask)
    assert out.shape == (1, 10, 16)
    changed = ids.clone()
    changed[0, 6:] = (changed[0, 6:] + 1) % 50  # edit only the padding tokens
    # Unpadded positions must not see the padding; without the mask they do.
    torch.testing.assert_close(run(model, changed, mask)[0, :6], out[0, :6])
    assert not torch.allclose(run(model, changed)[0, :6], run(model, ids)[0, :6])


@pytest.mark.parametrize(
    ("factory", "kwargs"),
    [(zoo.mlp, {}), (zoo.small_cnn, {}), (zoo.bert_like, {}), (zoo.resnet50, {"num_classes": 10})],
)
def test_weights_are_seeded_and_leave_the_global_stream_alone(factory, kwargs):
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    first = factory(**kwargs)
    assert torch.equal(torch.rand(3), expected_next)  # building consumed nothing from the caller
    assert same_weights(first, factory(**kwargs))
    assert not same_weights(first, factory(**kwargs, seed=1))


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: zoo.mlp(layers=0), "zoo.mlp: layers must be a positive integer, got 0"),
        (lambda: zoo.mlp(hidden="256"), "hidden must be a positive integer, got '256'"),
        (lambda: zoo.small_cnn(image_size=2), "image_size must be at least 4"),
        (lambda: zoo.resnet50(num_classes=True), "num_classes must be a positive integer"),
        (lambda: zoo.bert_like(hidden=30, heads=4), "multiple of heads"),
    ],
)
def test_bad_arguments_are_model_load_errors(call, message):
    with pytest.raises(ModelLoadError, match=message):
        call()


def test_keras_mlp_without_tensorflow_is_explained(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow", None)
    with pytest.raises(ModelLoadError, match="zoo.keras_mlp needs tensorflow.*pip install tensorflow-cpu"):
        zoo.keras_mlp()


@pytest.mark.tensorflow
def test_keras_mlp_shapes_and_seed():
    pytest.importorskip("tensorflow")
    import numpy as np

    model = zoo.keras_mlp(in_features=12, hidden=8, out_features=3)
    x = np.random.default_rng(0).standard_normal((4, 12)).astype("float32")
    assert tuple(model(x).shape) == (4, 3)
    np.testing.assert_array_equal(model(x).numpy(), zoo.keras_mlp(in_features=12, hidden=8, out_features=3)(x).numpy())
