"""Imported by the workers' forkserver at its start (and nowhere else): it imports the sweep's
libraries, as ``neuronperf.measure.preload`` describes."""

from neuronperf.measure.preload import preload_from_environment

preload_from_environment()
