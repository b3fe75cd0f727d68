"""``neuronperf.tensorflow``: compile and benchmark TensorFlow (Keras) models with NeuronPerf's API.

``device_type`` is "neuron" by default (tensorflow-neuron); "cpu" and "cuda" save a SavedModel.
tensorflow is imported only when a call needs it; inputs are numpy arrays.
"""

from __future__ import annotations

from neuronperf.api.framework import FrameworkAPI

_API = FrameworkAPI("tensorflow")
compile = _API.compile  # noqa: A001 - NeuronPerf's public name
benchmark = _API.benchmark
