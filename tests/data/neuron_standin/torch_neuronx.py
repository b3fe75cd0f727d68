"""A stand-in for the AWS Neuron SDK's torch_neuronx (which cannot be installed here): its
documented ``trace`` returns a TorchScript module; this one traces for the CPU."""

__version__ = "2.9.0-standin"


def trace(func, example_inputs, *, compiler_args=None, **kwargs):
    import torch

    return torch.jit.trace(func, example_inputs)
