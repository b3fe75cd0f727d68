"""``neuronperf.torch``: compile and benchmark PyTorch models with NeuronPerf's API.

``device_type`` is "neuron" by default, as in NeuronPerf (torch-neuronx, else torch-neuron);
"cpu" and "cuda" build TorchScript by default. torch itself is imported only when a call needs it.
"""

from __future__ import annotations

from neuronperf.api.framework import FrameworkAPI
from neuronperf.metrics import TopK as _TopK
from neuronperf.metrics import register_metric as _register_metric

_API = FrameworkAPI("torch")
compile = _API.compile  # noqa: A001 - NeuronPerf's public name
benchmark = _API.benchmark
evaluate = _API.evaluate

# Top-k accuracy needs scores per class, which torch classifiers return (numpy does the work).
_register_metric("topk", _TopK)
