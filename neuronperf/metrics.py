"""Evaluation metrics: what ``evaluate`` and ``benchmark(eval_metrics=...)`` report beside speed.

A metric is a ``BaseEvalMetric`` subclass registered under a name. Each worker process makes one
instance per metric and feeds it every ``(output, target)`` pair with ``process_record``; the
static ``aggregate`` combines the instances of all workers into one figure. The confusion-matrix
metrics count true/false positives/negatives and apply the textbook formula once, at the end,
so combining workers is exact (a ratio of sums, never a mean of ratios). A figure whose
denominator is zero is None: undefined, not zero.

Pure Python and numpy: importing this module imports no framework.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Callable, Optional

from neuronperf.errors import UsageError


def as_array(value: Any) -> Any:
    """A numpy array of a tensor, an array, a number or a (nested) list."""
    import numpy as np

    if hasattr(value, "detach"):  # a torch tensor, on any device, in any dtype numpy may lack
        value = value.detach().cpu()
        if str(value.dtype) == "torch.bfloat16":
            value = value.float()
        return value.numpy()
    if hasattr(value, "numpy") and not isinstance(value, np.ndarray):  # a TensorFlow tensor
        return np.asarray(value.numpy())
    return np.asarray(value)


def predicted_labels(output: Any, target: Any) -> Any:
    """Class labels from a model output: the argmax of the last axis when the output has one
    more axis than the target (scores or logits per class), else the output itself (labels)."""
    out = as_array(output)
    tgt = as_array(target)
    if out.ndim == tgt.ndim + 1:
        return out.argmax(axis=-1)
    if out.shape != tgt.shape:
        raise ValueError(f"output of shape {tuple(out.shape)} does not match target of shape {tuple(tgt.shape)}")
    return out


class BaseEvalMetric:
    """One metric's running state in one worker. ``process_record(output, target)`` takes one
    model call's output and its target; the static ``aggregate(metrics)`` turns the instances of
    every worker into the reported figure."""

    def process_record(self, output: Any, target: Any) -> None:
        """Account for one call's ``output`` against its ``target``."""
        raise NotImplementedError

    @staticmethod
    def aggregate(metrics: Iterable[BaseEvalMetric]) -> Optional[float]:
        """The figure of all ``metrics`` (instances of this class) together."""
        raise NotImplementedError


def _ratio(numerator: float, denominator: float) -> Optional[float]:
    return None if denominator == 0 else float(numerator) / float(denominator)


class Accuracy(BaseEvalMetric):
    """The fraction of predictions equal to their target (any number of classes)."""

    def __init__(self) -> None:
        self.correct = 0
        self.total = 0

    def process_record(self, output: Any, target: Any) -> None:
        predicted = predicted_labels(output, target)
        self.correct += int((predicted == as_array(target)).sum())
        self.total += int(predicted.size)

    @staticmethod
    def aggregate(metrics: Iterable[BaseEvalMetric]) -> Optional[float]:
        metrics = list(metrics)
        return _ratio(sum(m.correct for m in metrics), sum(m.total for m in metrics))  # type: ignore[attr-defined]


class ConfusionMetric(BaseEvalMetric):
    """A binary-classification metric: counts tp, fp, tn, fn with ``positive_label`` as the
    positive class (a prediction of any other label is negative); subclasses give ``formula``."""

    def __init__(self, positive_label: Any = 1) -> None:
        self.positive_label = positive_label
        self.tp = self.fp = self.tn = self.fn = 0

    def process_record(self, output: Any, target: Any) -> None:
        predicted = predicted_labels(output, target) == self.positive_label
        actual = as_array(target) == self.positive_label
        self.tp += int((predicted & actual).sum())
        self.fp += int((predicted & ~actual).sum())
        self.tn += int((~predicted & ~actual).sum())
        self.fn += int((~predicted & actual).sum())

    @staticmethod
    def formula(tp: int, fp: int, tn: int, fn: int) -> Optional[float]:
        raise NotImplementedError

    @classmethod
    def counts(cls, metrics: Iterable[BaseEvalMetric]) -> tuple[int, int, int, int]:
        """The summed (tp, fp, tn, fn) of ``metrics``."""
        ms: list[Any] = list(metrics)
        return (sum(m.tp for m in ms), sum(m.fp for m in ms), sum(m.tn for m in ms), sum(m.fn for m in ms))


def _confusion_metric(name: str, formula: Callable[[int, int, int, int], Optional[float]], doc: str) -> type:
    """A ``ConfusionMetric`` subclass with its own formula (its static ``aggregate`` applies it)."""

    def aggregate(metrics: Iterable[BaseEvalMetric]) -> Optional[float]:
        return formula(*ConfusionMetric.counts(metrics))

    return type(name, (ConfusionMetric,), {
        "__doc__": doc, "formula": staticmethod(formula), "aggregate": staticmethod(aggregate),
        "__module__": __name__,
    })


def _tpr(tp: int, fp: int, tn: int, fn: int) -> Optional[float]:
    return _ratio(tp, tp + fn)


def _tnr(tp: int, fp: int, tn: int, fn: int) -> Optional[float]:
    return _ratio(tn, tn + fp)


def _fpr(tp: int, fp: int, tn: int, fn: int) -> Optional[float]:
    return _ratio(fp, fp + tn)


def _fnr(tp: int, fp: int, tn: int, fn: int) -> Optional[float]:
    return _ratio(fn, fn + tp)


def _lr_plus(tp: int, fp: int, tn: int, fn: int) -> Optional[float]:
    tpr, fpr = _tpr(tp, fp, tn, fn), _fpr(tp, fp, tn, fn)
    return None if tpr is None or fpr is None else _ratio(tpr, fpr)


def _lr_minus(tp: int, fp: int, tn: int, fn: int) -> Optional[float]:
    fnr, tnr = _fnr(tp, fp, tn, fn), _tnr(tp, fp, tn, fn)
    return None if fnr is None or tnr is None else _ratio(fnr, tnr)


TruePositiveRate = _confusion_metric("TruePositiveRate", _tpr, "tp / (tp + fn): recall, sensitivity, hit rate.")
TrueNegativeRate = _confusion_metric("TrueNegativeRate", _tnr, "tn / (tn + fp): specificity, selectivity.")
FalsePositiveRate = _confusion_metric("FalsePositiveRate", _fpr, "fp / (fp + tn): fall-out.")
FalseNegativeRate = _confusion_metric("FalseNegativeRate", _fnr, "fn / (fn + tp): miss rate.")
Precision = _confusion_metric("Precision", lambda tp, fp, tn, fn: _ratio(tp, tp + fp),
                              "tp / (tp + fp): positive predictive value.")
NegativePredictiveValue = _confusion_metric("NegativePredictiveValue", lambda tp, fp, tn, fn: _ratio(tn, tn + fn),
                                            "tn / (tn + fn).")
FalseDiscoveryRate = _confusion_metric("FalseDiscoveryRate", lambda tp, fp, tn, fn: _ratio(fp, fp + tp),
                                       "fp / (fp + tp) = 1 - precision.")
FalseOmissionRate = _confusion_metric("FalseOmissionRate", lambda tp, fp, tn, fn: _ratio(fn, fn + tn),
                                      "fn / (fn + tn) = 1 - negative predictive value.")
PositiveLikelihoodRatio = _confusion_metric("PositiveLikelihoodRatio", _lr_plus, "TPR / FPR.")
NegativeLikelihoodRatio = _confusion_metric("NegativeLikelihoodRatio", _lr_minus, "FNR / TNR.")
ThreatScore = _confusion_metric("ThreatScore", lambda tp, fp, tn, fn: _ratio(tp, tp + fn + fp),
                                "tp / (tp + fn + fp): critical success index.")
F1 = _confusion_metric("F1", lambda tp, fp, tn, fn: _ratio(2 * tp, 2 * tp + fp + fn),
                       "2 tp / (2 tp + fp + fn): the harmonic mean of precision and recall.")


class _ErrorMetric(BaseEvalMetric):
    """Sums an element-wise error of output against target over every element."""

    def __init__(self) -> None:
        self.total = 0.0
        self.count = 0

    @staticmethod
    def error(difference: Any) -> Any:
        raise NotImplementedError

    def process_record(self, output: Any, target: Any) -> None:
        out, tgt = as_array(output).astype("float64"), as_array(target).astype("float64")
        if out.shape != tgt.shape:
            raise ValueError(f"output of shape {tuple(out.shape)} does not match target of shape {tuple(tgt.shape)}")
        self.total += float(self.error(out - tgt).sum())
        self.count += int(out.size)

    @staticmethod
    def aggregate(metrics: Iterable[BaseEvalMetric]) -> Optional[float]:
        ms: list[Any] = list(metrics)
        return _ratio(sum(m.total for m in ms), sum(m.count for m in ms))


class MeanAbsoluteError(_ErrorMetric):
    """The mean of |output - target| over every element."""

    @staticmethod
    def error(difference: Any) -> Any:
        return abs(difference)


class MeanSquaredError(_ErrorMetric):
    """The mean of (output - target)^2 over every element."""

    @staticmethod
    def error(difference: Any) -> Any:
        return difference * difference


class TopK(BaseEvalMetric):
    """The fraction of records whose target is among the ``k`` highest scores of the output
    (scores or logits per class on the last axis); registered as ``topk`` by ``neuronperf.torch``."""

    def __init__(self, k: int = 5) -> None:
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"topk: k must be a positive integer, got {k!r}")
        self.k = k
        self.correct = 0
        self.total = 0

    def process_record(self, output: Any, target: Any) -> None:
        import numpy as np

        scores, tgt = as_array(output), as_array(target)
        if scores.ndim != tgt.ndim + 1:
            raise ValueError(f"topk needs scores per class: output of shape {tuple(scores.shape)} for target of shape {tuple(tgt.shape)}")
        best = np.argsort(-scores, axis=-1, kind="stable")[..., : self.k]
        self.correct += int((best == tgt[..., None]).any(axis=-1).sum())
        self.total += int(tgt.size)

    @staticmethod
    def aggregate(metrics: Iterable[BaseEvalMetric]) -> Optional[float]:
        ms: list[Any] = list(metrics)
        return _ratio(sum(m.correct for m in ms), sum(m.total for m in ms))


# ---- the registry -------------------------------------------------------------------------------

#: name -> (class, keyword arguments of its constructor)
_REGISTRY: dict[str, tuple[type, dict[str, Any]]] = {}


def register_metric(name: str, cls: type, **init_kwargs: Any) -> None:
    """Register ``cls`` (a ``BaseEvalMetric`` subclass) as metric ``name``."""
    if not isinstance(name, str) or not name:
        raise UsageError(f"a metric name must be a non-empty string, got {name!r}")
    if not (isinstance(cls, type) and issubclass(cls, BaseEvalMetric)):
        raise UsageError(f"metric {name!r}: {cls!r} is not a subclass of neuronperf.BaseEvalMetric")
    _REGISTRY[name] = (cls, dict(init_kwargs))


def register_metric_from_existing(existing: str, new_name: str, **init_kwargs: Any) -> None:
    """Register ``new_name`` as metric ``existing`` built with other arguments
    (``register_metric_from_existing("topk", "top1", k=1)``)."""
    cls, kwargs = _lookup(existing)
    register_metric(new_name, cls, **{**kwargs, **init_kwargs})


def list_metrics() -> list[str]:
    """The names of every registered metric, sorted."""
    return sorted(_REGISTRY)


def _lookup(name: Any) -> tuple[type, dict[str, Any]]:
    if not isinstance(name, str) or name not in _REGISTRY:
        raise UsageError(f"unknown metric {name!r} (registered: {', '.join(list_metrics())})")
    return _REGISTRY[name]


def check_metrics(names: Any) -> list[str]:
    """``names`` as a list of registered metric names (one name is a list of one); raise
    ``UsageError`` naming the registered metrics for an unknown one."""
    listed = [names] if isinstance(names, str) else list(names) if isinstance(names, (list, tuple)) else None
    if not listed:
        raise UsageError(f"metrics must be a metric name or a non-empty list of them, got {names!r}")
    for name in listed:
        _lookup(name)
    if len(set(listed)) != len(listed):
        raise UsageError(f"metrics {listed} lists a metric twice")
    return listed


def make_metric(name: str) -> BaseEvalMetric:
    """A fresh instance of registered metric ``name``."""
    cls, kwargs = _lookup(name)
    return cls(**kwargs)  # type: ignore[no-any-return]


def aggregate(name: str, instances: Sequence[BaseEvalMetric]) -> Optional[float]:
    """The figure of metric ``name`` over ``instances`` (one per worker)."""
    cls, _ = _lookup(name)
    return cls.aggregate(instances)  # type: ignore[no-any-return, attr-defined]


_BUILTIN: dict[str, type] = {
    "accuracy": Accuracy,
    "true_positive_rate": TruePositiveRate, "tpr": TruePositiveRate, "recall": TruePositiveRate,
    "sensitivity": TruePositiveRate, "hit_rate": TruePositiveRate,
    "true_negative_rate": TrueNegativeRate, "tnr": TrueNegativeRate, "specificity": TrueNegativeRate,
    "selectivity": TrueNegativeRate,
    "false_positive_rate": FalsePositiveRate, "fpr": FalsePositiveRate, "fall_out": FalsePositiveRate,
    "false_negative_rate": FalseNegativeRate, "fnr": FalseNegativeRate, "miss_rate": FalseNegativeRate,
    "precision": Precision, "positive_predictive_value": Precision, "ppv": Precision,
    "negative_predictive_value": NegativePredictiveValue, "npv": NegativePredictiveValue,
    "false_discovery_rate": FalseDiscoveryRate, "fdr": FalseDiscoveryRate,
    "false_omission_rate": FalseOmissionRate, "for": FalseOmissionRate,
    "positive_likelihood_ratio": PositiveLikelihoodRatio, "lr_plus": PositiveLikelihoodRatio,
    "negative_likelihood_ratio": NegativeLikelihoodRatio, "lr_minus": NegativeLikelihoodRatio,
    "threat_score": ThreatScore, "critical_success_index": ThreatScore, "csi": ThreatScore,
    "f1": F1, "f1_score": F1,
    "mean_absolute_error": MeanAbsoluteError, "mae": MeanAbsoluteError,
    "mean_squared_error": MeanSquaredError, "mse": MeanSquaredError,
}
for _name, _cls in _BUILTIN.items():
    register_metric(_name, _cls)


__all__ = [
    "BaseEvalMetric", "ConfusionMetric", "TopK", "aggregate", "check_metrics", "list_metrics", "make_metric",
    "register_metric", "register_metric_from_existing",
]
