"""``neuronperf.torch``: compile and benchmark PyTorch models with NeuronPerf's API.

``device_type`` is "neuron" by default, as in NeuronPerf (torch-neuronx, else torch-neuron);
"cpu" and "cuda" build TorchScript by default. torch itself is imported only when a call needs it.
"""

from __future__ import annotations

from neuronperf.api import FrameworkAPI

_API = FrameworkAPI("torch")
compile = _API.compile  # noqa: A001 - NeuronPerf's public name
benchmark = _API.benchmark
