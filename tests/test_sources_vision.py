"""timm and torchvision sources, with random weights (nothing is downloaded).

torchvision from the package index does not import beside the CPU torch 2.13.0 the main suite
uses, so these run in their own nox session (``nox -s vision``), whose venv holds a torch and
torchvision built for each other, and timm; elsewhere they are skipped."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("timm")
pytest.importorskip("torchvision")

from neuronperf.errors import ModelLoadError  # noqa: E402
from neuronperf.sources.models import build, check, describe, make_source, needs_worker  # noqa: E402


@pytest.mark.parametrize("kind", ["timm", "torchvision"])
def test_resnet18_builds_with_random_weights_and_takes_its_image_by_name(kind):
    source = make_source(kind, "resnet18")
    assert needs_worker(source)  # the library knows the architecture's input
    described = describe(source)
    (image,) = described.inputs
    assert (image["name"], image["shape"], image["dtype"]) == ("x", [3, 224, 224], "float32")
    assert described.identity == {kind: "resnet18", "pretrained": False}
    model = build(source, dtype="bfloat16")
    assert not model.training and next(model.parameters()).dtype == torch.bfloat16
    with torch.inference_mode():
        assert model(x=torch.randn(2, 3, 224, 224, dtype=torch.bfloat16)).shape == (2, 1000)


def test_the_input_size_is_the_architectures_own():
    assert describe(make_source("torchvision", "inception_v3")).inputs[0]["shape"] == [3, 299, 299]
    assert describe(make_source("timm", "vit_tiny_patch16_384")).inputs[0]["shape"] == [3, 384, 384]
    assert describe(make_source("timm", "resnet18", kwargs={"in_chans": 1})).inputs[0]["shape"] == [1, 224, 224]
    assert describe(make_source("timm", "resnet18"), declared=["image_size"]).inputs[0]["shape"] == [3, "$image_size", "$image_size"]


@pytest.mark.parametrize("kind, name, expected", [
    ("timm", "resnt18", "no such architecture in timm"),
    ("torchvision", "resnt18", "no such classification model in torchvision"),
    ("torchvision", "fasterrcnn_resnet50_fpn", "not an image classification model"),
])
def test_an_unknown_name_lists_the_closest(kind, name, expected):
    with pytest.raises(ModelLoadError) as caught:
        check(make_source(kind, name), [])
    message = str(caught.value)
    assert message.startswith(f"{kind} {name!r}: {expected}") and "\n" not in message
    if "resnt" in name:
        assert "closest: resnet18" in message


def test_pretrained_weights_that_cannot_be_downloaded_are_one_line(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(ModelLoadError, match="pretrained weights cannot be downloaded") as caught:
        build(make_source("timm", "resnet18", pretrained=True))
    assert "\n" not in str(caught.value)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["timm", "torchvision"])
def test_a_resnet18_sweep_runs_on_the_cpu(kind, tmp_path):
    import json
    import subprocess
    import sys
    import textwrap

    (tmp_path / "sweep.yaml").write_text(textwrap.dedent(f"""
        version: 1
        framework: torch
        device_type: cpu
        compiler: torchscript
        output_dir: out
        models:
          - name: resnet18
            {kind}: resnet18
        sweep: {{batch_sizes: [1, 2]}}
        benchmark: {{duration: 0.3, warmup: {{calls: 2}}, timeout: 300}}
        """).lstrip())
    done = subprocess.run([sys.executable, "-m", "neuronperf", "run", "sweep.yaml", "--quiet"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = json.loads((tmp_path / "out" / "results.json").read_text())
    assert [(r["id"], r["status"]) for r in rows] == [("resnet18-bs1-p1-m1-w1", "ok"), ("resnet18-bs2-p1-m1-w1", "ok")]
    assert "x=float32[2,3,224,224]" in subprocess.run(
        [sys.executable, "-m", "neuronperf", "plan", "sweep.yaml"], cwd=tmp_path, capture_output=True, text=True).stdout
