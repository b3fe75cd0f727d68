"""Where models come from: a model reference in, a model object and its example inputs out.

``factory`` resolves and calls ``factory:`` references (``pkg.module:callable`` or
``file.py:callable``, or a model held in memory by the Python API) and fingerprints their
source; ``inputs`` makes example tensors from a spec's input shapes. Backends build models
through here; the driver never imports user code itself (it asks a worker process).
"""
