"""TensorFlow 2 on CPU and CUDA: a Keras model (or tf.Module) from a factory, saved as a
SavedModel folder with a ``serve`` function of fixed input signature.

tensorflow is imported only inside functions. The helpers at the top are shared with the
tensorflow-neuron backend.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Optional

from neuronperf.backends.base import Backend, arguments_of
from neuronperf.entries import CompileEntry
from neuronperf.errors import BackendUnavailable, CompileFailed, ModelLoadError, UsageError
from neuronperf.sources.factory import build_model, in_memory_example
from neuronperf.sources.inputs import make_arrays

TF_INSTALL = "pip install tensorflow-cpu (or tensorflow for GPUs)"


def import_tensorflow() -> Any:
    """Import tensorflow, or raise ``BackendUnavailable`` with the install command."""
    # TensorFlow's C++ start-up banner would repeat in every worker; keep warnings and errors.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
    try:
        import tensorflow as tf
    except ImportError as e:
        raise BackendUnavailable(f"framework tensorflow is not installed ({e}); install with: {TF_INSTALL}") from e
    return tf


def tf_inputs(entry: CompileEntry, seed: int = 0) -> tuple[Any, ...]:
    """The example inputs of one call as tf tensors (bfloat16 cast from float32); the caller's
    own arrays when the Python API compiles a model object."""
    tf = import_tensorflow()
    given = in_memory_example(entry)
    if given is not None:
        return tuple(tf.constant(x) for x in given)
    tensors = []
    for spec, array in zip(entry.inputs, make_arrays(entry.inputs, entry.batch_size, seed)):
        tensor = tf.constant(array)
        if spec.dtype == "bfloat16":
            tensor = tf.cast(tensor, tf.bfloat16)
        tensors.append(tensor)
    return tuple(tensors)


def is_keras_model(model: Any) -> bool:
    """Whether ``model`` follows Keras' calling convention (several inputs go in one list)."""
    tf = import_tensorflow()
    return isinstance(model, tf.keras.Model)


def call_model(model: Any, inputs: tuple[Any, ...]) -> Any:
    """Call ``model`` with one call's inputs: Keras models take one tensor or a list (their
    second positional argument is ``training``); anything else takes them positionally."""
    if is_keras_model(model):
        return model(inputs[0] if len(inputs) == 1 else list(inputs), training=False)
    return model(*inputs)


def tf_to_numpy(output: Any) -> Any:
    """Convert tf tensors inside a (nested) output to numpy arrays, keeping the nesting."""
    if hasattr(output, "numpy") and callable(output.numpy):
        return output.numpy()
    if isinstance(output, dict):
        return {k: tf_to_numpy(v) for k, v in output.items()}
    if isinstance(output, (list, tuple)):
        converted = [tf_to_numpy(v) for v in output]
        return converted if isinstance(output, list) else tuple(converted)
    return output


class TensorFlowBackend(Backend):
    """tensorflow on cpu/cuda, compiler ``savedmodel``: the factory's model wrapped in a
    ``tf.function`` with the entry's static input signature, saved with
    ``tf.saved_model.save`` (a folder) and loaded with ``tf.saved_model.load``."""

    name = "tensorflow"
    framework = "tensorflow"
    device_types = ("cpu", "cuda")
    compilers = ("savedmodel",)

    def check_available(self, device_type: str) -> None:
        tf = import_tensorflow()
        if device_type == "cuda" and not tf.config.list_physical_devices("GPU"):
            raise BackendUnavailable(
                f"device_type cuda needs a GPU build of tensorflow and a GPU; tensorflow {tf.__version__} sees none"
            )
        if device_type not in self.device_types:
            raise BackendUnavailable(f"backend tensorflow does not serve device_type {device_type!r}")

    def compiler_version(self, compiler: str) -> str:
        self._check_compiler(compiler)
        return f"tensorflow {import_tensorflow().__version__}"

    def artifact_suffix(self, compiler: str) -> Optional[str]:
        self._check_compiler(compiler)
        return ""  # a SavedModel is a folder

    def check_compiler_args(self, entry: CompileEntry) -> None:
        if entry.compiler_args:
            raise UsageError(f"{entry.id}: tensorflow/savedmodel takes no compiler_args")

    def compile(self, entry: CompileEntry, artifact_path: Optional[Path]) -> None:
        self._check_compiler(entry.compiler)
        if entry.compiler_args:
            raise UsageError(f"{entry.id}: tensorflow/savedmodel takes no compiler_args")
        if artifact_path is None:
            raise CompileFailed(entry.id, "compiler savedmodel needs an artifact path")
        tf = import_tensorflow()
        model = build_model(entry.model)
        inputs = tf_inputs(entry)
        # One argument holding the list of inputs: a nested input_signature is supported by
        # every TF2 release, a variadic one is not.
        signature = [[tf.TensorSpec(x.shape, x.dtype, name=f"input_{i}") for i, x in enumerate(inputs)]]

        def serve(tensors: Any) -> Any:
            return call_model(model, tuple(tensors))

        module = tf.Module()
        module.model = model  # tracked, so the variables are saved with the function
        module.serve = tf.function(serve, input_signature=signature)
        try:
            module.serve(list(inputs))  # builds the model and traces once, so errors surface here
            tf.saved_model.save(module, str(artifact_path))
        except Exception as e:  # any tracing or saving failure becomes this entry's error
            raise CompileFailed(entry.id, f"tf.saved_model.save failed: {type(e).__name__}: {e}") from e

    def load(self, entry: CompileEntry, artifact_path: Optional[Path], device_id: int) -> Callable[..., Any]:
        self._check_compiler(entry.compiler)
        if artifact_path is None or not os.path.isdir(artifact_path):
            raise ModelLoadError(f"{entry.id}: SavedModel folder not found: {artifact_path}")
        tf = import_tensorflow()
        device = f"/GPU:{device_id % max(1, len(tf.config.list_physical_devices('GPU')))}" if entry.device_type == "cuda" else "/CPU:0"
        with tf.device(device):
            loaded = tf.saved_model.load(str(artifact_path))
        if not hasattr(loaded, "serve") and "serving_default" in getattr(loaded, "signatures", {}):
            # A SavedModel of the user's (file:): its serving signature, fed by keyword.
            return _SignatureCallable(tf, loaded, device, [t.name for t in entry.inputs])
        return _DeviceCallable(tf, loaded, device)

    def example_inputs(self, entry: CompileEntry, seed: int = 0) -> tuple[Any, ...]:
        return arguments_of(tf_inputs(entry, seed))

    def to_numpy(self, output: Any) -> Any:
        return tf_to_numpy(output)

    def synchronize(self, device_type: str) -> None:
        # TensorFlow queues GPU kernels and returns: wait for them inside the timed call. It has
        # no per-thread stream to wait for, so this waits for the whole device (TF >= 2.13).
        if device_type == "cuda":
            sync_devices = getattr(import_tensorflow().test.experimental, "sync_devices", None)
            if sync_devices is not None:
                sync_devices()

    def visible_devices_env(self, device_type: str, copy_idx: int, pipeline_size: int) -> dict[str, str]:
        if device_type != "cuda":
            return {}
        from neuronperf.backends.torch_backend import cuda_pinning_env

        return cuda_pinning_env(copy_idx, self.device_count("cuda"))

    def device_count(self, device_type: str) -> int:
        if device_type == "cuda":
            return len(import_tensorflow().config.list_physical_devices("GPU"))
        return 1

    def _check_compiler(self, compiler: str) -> None:
        if compiler not in self.compilers:
            raise UsageError(f"backend tensorflow has no compiler {compiler!r}; choose: savedmodel")


class _SignatureCallable:
    """Runs a SavedModel's ``serving_default`` signature on one device, passing the inputs by
    their names: the entry's (``name:`` in the spec), else the signature's own, in its order."""

    def __init__(self, tf: Any, loaded: Any, device: str, names: list):
        self._device = tf.device
        self.loaded = loaded  # keeps the variables the signature borrows alive
        self.device = device
        self.function = loaded.signatures["serving_default"]
        declared = list(self.function.structured_input_signature[1])
        self.names = list(names) if names and all(names) else declared

    def __call__(self, *inputs: Any) -> Any:
        with self._device(self.device):
            outputs = self.function(**dict(zip(self.names, inputs)))
        return outputs[next(iter(outputs))] if isinstance(outputs, dict) and len(outputs) == 1 else outputs


class _DeviceCallable:
    """Runs a restored ``serve`` function (which takes the list of inputs) on one device."""

    def __init__(self, tf: Any, loaded: Any, device: str):
        self._device = tf.device
        # Keep the restored object itself: its `serve` function only borrows the variables it
        # owns, and they are freed (breaking every call) once the object is collected.
        self.loaded = loaded
        self.device = device

    def __call__(self, *inputs: Any) -> Any:
        with self._device(self.device):
            return self.loaded.serve(list(inputs))
