"""The evaluation metrics against a hand-computed confusion matrix, and their registry."""

from __future__ import annotations

import numpy as np
import pytest

import neuronperf
from neuronperf import metrics
from neuronperf.errors import UsageError

pytestmark = pytest.mark.pure

# A hand-made binary confusion matrix: tp=6, fp=2, tn=8, fn=4 (20 records; positive class 1).
TP, FP, TN, FN = 6, 2, 8, 4
PREDICTED = np.array([1] * TP + [1] * FP + [0] * TN + [0] * FN)
ACTUAL = np.array([1] * TP + [0] * FP + [0] * TN + [1] * FN)

# The textbook value of each metric for that matrix, worked out by hand.
EXPECTED = {
    "accuracy": 14 / 20,
    "true_positive_rate": 6 / 10, "recall": 6 / 10, "sensitivity": 6 / 10, "hit_rate": 6 / 10,
    "true_negative_rate": 8 / 10, "specificity": 8 / 10, "selectivity": 8 / 10,
    "false_positive_rate": 2 / 10, "fall_out": 2 / 10,
    "false_negative_rate": 4 / 10, "miss_rate": 4 / 10,
    "precision": 6 / 8, "positive_predictive_value": 6 / 8,
    "negative_predictive_value": 8 / 12,
    "false_discovery_rate": 2 / 8,    # fp / (fp + tp)
    "false_omission_rate": 4 / 12,    # fn / (fn + tn)
    "positive_likelihood_ratio": 3.0,  # (6/10) / (2/10)
    "negative_likelihood_ratio": 0.5,  # (4/10) / (8/10)
    "threat_score": 6 / 12, "critical_success_index": 6 / 12,
    "f1": 12 / 18,
}


def figure(name: str, batches: list) -> float:
    """Feed ``batches`` of (output, target) to two instances (as two workers would), aggregate."""
    instances = [metrics.make_metric(name), metrics.make_metric(name)]
    for i, (output, target) in enumerate(batches):
        instances[i % 2].process_record(output, target)
    value = metrics.aggregate(name, instances)
    assert value is not None
    return value


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_metric_matches_the_hand_computed_confusion_matrix(name):
    labels = [(PREDICTED[i:i + 5], ACTUAL[i:i + 5]) for i in range(0, 20, 5)]
    assert figure(name, labels) == pytest.approx(EXPECTED[name])
    # Scores per class give the same figures: the prediction is their argmax.
    logits = [(np.eye(2)[p] * 3.0 - 1.0, t) for p, t in labels]
    assert figure(name, logits) == pytest.approx(EXPECTED[name])


def test_error_metrics_and_topk():
    output, target = np.array([1.0, 2.0, 3.0, 4.0]), np.array([1.0, 1.0, 5.0, 2.0])
    assert figure("mean_absolute_error", [(output, target)]) == pytest.approx(5 / 4)  # 0+1+2+2
    assert figure("mse", [(output, target)]) == pytest.approx(9 / 4)  # 0+1+4+4
    scores = np.array([[0.1, 0.5, 0.4], [0.7, 0.2, 0.1], [0.2, 0.3, 0.5], [0.6, 0.3, 0.1]])
    labels = np.array([2, 0, 0, 2])  # ranks of the target: 2nd, 1st, 3rd, 3rd
    neuronperf.register_metric_from_existing("topk", "top2_test", k=2)
    neuronperf.register_metric_from_existing("topk", "top1_test", k=1)
    assert figure("top2_test", [(scores, labels)]) == pytest.approx(2 / 4)
    assert figure("top1_test", [(scores, labels)]) == pytest.approx(1 / 4)


def test_an_undefined_ratio_is_none_not_zero():
    instance = metrics.make_metric("precision")
    instance.process_record(np.array([0, 0]), np.array([1, 0]))  # no positive predictions
    assert metrics.aggregate("precision", [instance]) is None


def test_registry_lists_registers_and_names_the_registered_on_a_typo():
    names = neuronperf.list_metrics()
    assert {"accuracy", "f1", "topk", "mae", "false_omission_rate"} <= set(names)

    class Count(neuronperf.BaseEvalMetric):
        def __init__(self) -> None:
            self.n = 0

        def process_record(self, output, target):
            self.n += len(target)

        @staticmethod
        def aggregate(instances):
            return float(sum(m.n for m in instances))

    neuronperf.register_metric("records_test", Count)
    assert figure("records_test", [([0, 1], [0, 1]), ([1], [1])]) == 3.0
    with pytest.raises(UsageError, match=r"unknown metric 'acuracy' \(registered: accuracy, .*f1"):
        metrics.check_metrics(["acuracy"])
    with pytest.raises(UsageError, match="not a subclass"):
        neuronperf.register_metric("bad", dict)
    with pytest.raises(UsageError, match="twice"):
        metrics.check_metrics(["f1", "f1"])
