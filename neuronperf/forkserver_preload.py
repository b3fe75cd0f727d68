"""Imported by the workers' forkserver at its start (and nowhere else): it imports the sweep's
libraries, as ``neuronperf.preload`` describes."""

from neuronperf.preload import preload_from_environment

preload_from_environment()
