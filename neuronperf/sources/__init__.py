"""Where models come from: a model reference in, a model object and its example inputs out.

``factory`` resolves and calls ``factory:`` references (``pkg.module:callable`` or
``file.py:callable``, or a model held in memory by the Python API) and fingerprints their
source; ``inputs`` makes example tensors from a spec's input shapes. Backends build models
through here; the driver never imports user code itself (it asks a worker process).

The built-in sources beside ``factory:`` (issue 25): ``hf`` (Hugging Face checkpoints through
transformers' Auto classes), ``timm``, ``torchvision`` and ``files`` (saved artifacts, measured
as they are); ``models`` describes, checks and builds any of them, ``planning`` describes a
spec's models for the plan stage (what needs a library, in a worker), ``dtypes`` casts for the
``dtype`` axis and ``digest`` hashes the files a model comes from for its identity.
"""
