"""Accuracy beside speed through the Python API: evaluate, and benchmark(eval_metrics=...)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

import neuronperf.torch as npt
from neuronperf.errors import UsageError

sys.path.insert(0, str(Path(__file__).parent / "data" / "evaluate"))
import eval_models as em  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture
def classifier_index(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    example = em.dataset()[0][0]
    return npt.compile(em.classifier(), example, batch_sizes=[em.BATCH], device_type="cpu")


def test_evaluate_finds_the_accuracy_known_by_construction(classifier_index):
    reports = npt.evaluate(classifier_index, em.dataset(), metrics=["accuracy", "topk", "f1"], device_type="cpu")
    assert len(reports) == 1
    report = reports[0]
    assert report["status"] == "ok", report
    assert report["accuracy"] == pytest.approx(em.TRUE_ACCURACY)
    assert report["topk"] == 1.0  # two classes: the target is always in the top 5
    assert report["eval_items"] == em.ITEMS
    assert 0 < report["f1"] <= 1


def test_benchmark_with_eval_metrics_puts_accuracy_beside_throughput(classifier_index):
    reports = npt.benchmark(classifier_index, em.dataset(), eval_metrics=["accuracy"], duration=0.3,
                            n_models=1, workers_per_model=[1, 2], warmup_calls=2, device_type="cpu")
    assert [r["workers_per_model"] for r in reports] == [1, 2]
    for report in reports:
        assert report["status"] == "ok", report
        assert report["throughput_avg"] > 0
        assert report["accuracy"] == pytest.approx(em.TRUE_ACCURACY)


def test_bad_evaluation_input_is_one_usage_error(classifier_index):
    with pytest.raises(UsageError, match=r"unknown metric 'acuracy' \(registered: accuracy"):
        npt.evaluate(classifier_index, em.dataset(), metrics=["acuracy"], device_type="cpu")
    with pytest.raises(UsageError, match="dataset item 0 is a list, not a tuple"):
        npt.evaluate(classifier_index, em.not_tuples(), device_type="cpu")
    with pytest.raises(UsageError, match="empty"):
        npt.evaluate(classifier_index, [], device_type="cpu")


def test_a_model_that_fails_on_the_dataset_is_a_row_with_its_reason(classifier_index):
    wrong_width = [(torch.zeros(em.BATCH, em.FEATURES + 3), torch.zeros(em.BATCH, dtype=torch.long))]
    [report] = npt.evaluate(classifier_index, wrong_width, device_type="cpu")
    assert report["status"] == "error"
    assert report["accuracy"] is None
    assert "RuntimeError" in report["error"] and "\n" not in report["error"]
