"""neuronperf: declarative benchmark sweeps for ML inference, and the NeuronPerf Python API.

``import neuronperf`` is cheap: it imports no framework. ``neuronperf.torch``,
``neuronperf.tensorflow`` and ``neuronperf.cpu`` are imported on first use.
"""

from __future__ import annotations

__version__ = "0.1.0"

from neuronperf import model_index  # noqa: E402
