"""Resolve a model factory reference ("pkg.module:callable" or "file.py:callable") to a callable.

This is the one place that imports user code. The spec and plan stages never call it; the driver
calls ``resolve_factory`` once per model before any compile so that a typo is reported up front,
and backends call ``build_model`` inside compile jobs and worker processes.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import importlib.util
import os
import sys
from collections.abc import Mapping
from typing import Any, Callable, Optional

from neuronperf.entries import ModelRef, thaw
from neuronperf.errors import ModelLoadError


def split_reference(reference: str) -> tuple[str, str]:
    """Split "module_or_file:attr.path" into its two halves; raise ModelLoadError if malformed."""
    module, sep, attr = reference.rpartition(":")
    # "C:\\x.py:f" on Windows has two colons; rpartition keeps the drive in `module`.
    if not sep or not module or not attr:
        raise ModelLoadError(f"factory {reference!r} is not 'package.module:callable' or 'file.py:callable'")
    return module, attr


def resolve_factory(ref: ModelRef) -> Callable[..., Any]:
    """Import the factory that ``ref`` names and return it (without calling it)."""
    module_name, attr_path = split_reference(ref.factory)
    if module_name.endswith(".py"):
        path = module_name if os.path.isabs(module_name) else os.path.join(ref.base_dir, module_name)
        module = _import_file(os.path.abspath(path), ref.factory)
    else:
        try:
            module = importlib.import_module(module_name)
        except ImportError as e:
            raise ModelLoadError(f"factory {ref.factory!r}: cannot import {module_name!r}: {e}") from e
        except Exception as e:  # the module itself is broken (SyntaxError, RuntimeError at import...)
            raise ModelLoadError(
                f"factory {ref.factory!r}: importing {module_name!r} raised {type(e).__name__}: {_one_line(e)}"
            ) from e
    target: Any = module
    for part in attr_path.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise ModelLoadError(
                f"factory {ref.factory!r}: {module_name!r} has no attribute {attr_path!r}"
            ) from None
    if not callable(target):
        raise ModelLoadError(f"factory {ref.factory!r} is not callable")
    return target  # type: ignore[no-any-return]


def source_digest(ref: ModelRef) -> str:
    """A hash of the file behind a ``file.py:callable`` factory ("" for a package factory, a
    built-in source, whose identity is in the entry key already, or a file that cannot be read:
    resolving it reports that). Read, never imported."""
    if ref.source is not None:
        return ""
    module_name = ref.factory.rpartition(":")[0]
    if not module_name.endswith(".py"):
        return ""
    path = module_name if os.path.isabs(module_name) else os.path.join(ref.base_dir, module_name)
    try:
        with open(path, "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()[:16]
    except OSError:
        return ""


def factory_libraries(ref: ModelRef) -> tuple[str, ...]:
    """The distributions whose version shapes the model ``ref`` builds, found without importing
    it: for a zoo factory, what it declares in ``zoo.BUILDS_ON``; for ``pkg.module:callable``,
    the distribution that installs ``pkg``. A ``file.py`` factory's own file is hashed instead
    (``source_digest``)."""
    if ref.source is not None:
        from neuronperf.sources.models import LIBRARIES

        return LIBRARIES.get(ref.source.kind, ())
    module_name, _, attr = ref.factory.rpartition(":")
    if module_name.endswith(".py") or not module_name or ref.factory == IN_MEMORY_FACTORY:
        return ()
    if module_name == "neuronperf.zoo":
        from neuronperf.zoo import BUILDS_ON

        return BUILDS_ON.get(attr, ())
    top = module_name.split(".")[0]
    if top == "neuronperf":
        return ()
    return tuple(sorted(set(_distributions_of().get(top, [top]))))


@functools.cache
def _distributions_of() -> Mapping[str, list[str]]:
    """Top-level import name -> the distributions that install it (a scan of the metadata of
    every installed package, done once)."""
    try:
        from importlib.metadata import packages_distributions  # Python 3.10+
    except ImportError:
        return {}
    return packages_distributions()


def worker_preload(refs: Any) -> tuple[str, ...]:
    """What worker processes should import once, before they fork (the forkserver's preload),
    as ``module`` or ``module:name,name`` items (see ``neuronperf.measure.preload``): the top-level
    imports of a ``file.py`` factory, a zoo factory's ``BUILDS_ON``, and a
    ``pkg.module:callable`` factory's top-level package when it is an installed distribution.
    Found by reading, never importing: user code never runs in the forkserver, only installed
    third-party libraries that do not come from the spec's folder (not the standard library)."""
    wanted: dict[str, set[str]] = {}
    for ref in refs:
        if ref.source is not None:
            # A built-in source's library (transformers, timm, torchvision): its import is most
            # of a worker's start-up.
            for library in factory_libraries(ref):
                wanted.setdefault(library, set())
            continue
        module_name = ref.factory.rpartition(":")[0]
        if module_name.endswith(".py"):
            path = module_name if os.path.isabs(module_name) else os.path.join(ref.base_dir, module_name)
            folder = os.path.dirname(os.path.abspath(path))
            for module, names in _top_level_imports(path):
                if not _is_local(module.split(".")[0], folder):
                    wanted.setdefault(module, set()).update(names)
        elif module_name:
            if module_name == "neuronperf.zoo":
                for library in factory_libraries(ref):
                    wanted.setdefault(library, set())
            top = module_name.split(".")[0]
            if top != "neuronperf" and top in _distributions_of():
                wanted.setdefault(top, set())
    items = []
    for module, wanted_names in sorted(wanted.items()):
        names = sorted(wanted_names)
        top = module.split(".")[0]
        if top == "neuronperf" or _is_stdlib(top) or importlib.util.find_spec(top) is None:
            continue
        items.append(f"{module}:{','.join(names)}" if names else module)
    return tuple(items)


def _top_level_imports(path: str) -> list[tuple[str, list[str]]]:
    """(module, names) of each top-level ``import``/``from ... import`` statement of a file."""
    import ast

    try:
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read(), filename=path)
    except (OSError, SyntaxError, ValueError):
        return []  # resolving the factory reports what is wrong with it
    found: list[tuple[str, list[str]]] = []
    for node in tree.body:
        if isinstance(node, ast.Import):
            found.extend((alias.name, []) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.append((node.module, [a.name for a in node.names if a.name != "*"]))
    return found


def _is_stdlib(name: str) -> bool:
    """Whether ``name`` is a module of the standard library (Python 3.10 lists them; before,
    a module found in the interpreter's own library folder, outside site-packages, is one)."""
    listed = getattr(sys, "stdlib_module_names", None)
    if listed is not None:
        return name in listed
    if name in sys.builtin_module_names:
        return True
    import sysconfig

    try:
        found = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return False
    origin = getattr(found, "origin", None) or ""
    if origin in ("built-in", "frozen"):
        return True
    stdlib = os.path.realpath(sysconfig.get_paths()["stdlib"])
    path = os.path.realpath(origin)
    return path.startswith(stdlib + os.sep) and "site-packages" not in path and "dist-packages" not in path


def _is_local(name: str, folder: str) -> bool:
    """Whether ``name`` is a module or package of the user's own beside the factory file."""
    return os.path.exists(os.path.join(folder, f"{name}.py")) or os.path.isdir(os.path.join(folder, name))


def resolve_errors(refs: Any) -> dict[str, str]:
    """The error of each factory that cannot be resolved, by model name (run in a worker
    process by the sweep driver, which never imports user code itself)."""
    failures = {}
    for ref in refs:
        if ref.source is not None:
            continue  # checked by neuronperf.sources.models.check_all
        try:
            resolve_factory(ref)
        except ModelLoadError as e:
            failures[ref.name] = str(e)
    return failures


def build_model(ref: ModelRef) -> Any:
    """Resolve the factory and call it with the reference's kwargs (or build a built-in
    source's model: hf, timm, torchvision)."""
    if ref.source is not None:
        from neuronperf.sources.models import build

        return build(ref.source)
    factory = resolve_factory(ref)
    return factory(**thaw(ref.kwargs))


def _import_file(path: str, reference: str) -> Any:
    if not os.path.isfile(path):
        raise ModelLoadError(f"factory {reference!r}: file not found: {path}")
    # A stable module name per file, so worker processes and pickling see the same module.
    name = "neuronperf_user_" + "".join(c if c.isalnum() else "_" for c in path)
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ModelLoadError(f"factory {reference!r}: cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    # The file's folder goes on sys.path so that it can import its siblings; LAST, so that a
    # file beside the spec (a "yaml.py", a "torch.py") never shadows an installed package.
    folder = os.path.dirname(path)
    if folder not in sys.path:
        sys.path.append(folder)
    try:
        spec.loader.exec_module(module)
    except Exception as e:
        del sys.modules[name]
        raise ModelLoadError(
            f"factory {reference!r}: importing {path} raised {type(e).__name__}: {_one_line(e)}"
        ) from e
    return module


def _one_line(error: BaseException) -> str:
    """An exception's message on one line (a SyntaxError's is several, with the source)."""
    if isinstance(error, SyntaxError):
        return f"{error.msg} ({error.filename}, line {error.lineno})"
    return " ".join(str(error).split())


# ---- models that exist only in this process (the Python API's compile(model, ...)) -----------

IN_MEMORY_FACTORY = "neuronperf.sources.factory:in_memory_model"
_IN_MEMORY: dict[str, Any] = {}


_IN_MEMORY_EXAMPLES: dict[str, list] = {}


def register_in_memory(model: Any, name: str, examples: Optional[list] = None) -> ModelRef:
    """A ``ModelRef`` for a model object the caller already holds (compiled in this process).

    ``examples[i]`` is the caller's example input for ``input_idx`` i: backends trace with it,
    as NeuronPerf did, rather than with generated data of the same shape."""
    from neuronperf.entries import freeze

    token = f"{name}-{id(model):x}"
    _IN_MEMORY[token] = model
    if examples is not None:
        _IN_MEMORY_EXAMPLES[token] = list(examples)
    return ModelRef(name, IN_MEMORY_FACTORY, freeze({"token": token}))


def in_memory_example(entry: Any) -> Optional[tuple]:
    """The caller's own example input of a compile entry made by the Python API (a tuple of
    tensors), or None for any other entry."""
    if entry.model.factory != IN_MEMORY_FACTORY:
        return None
    examples = _IN_MEMORY_EXAMPLES.get(thaw(entry.model.kwargs).get("token", ""))
    if examples is None or entry.input_idx >= len(examples):
        return None
    example = examples[entry.input_idx]
    return tuple(example) if isinstance(example, (tuple, list)) else (example,)


def unregister_in_memory(ref: ModelRef) -> None:
    """Forget a model registered by ``register_in_memory`` (so it can be garbage-collected)."""
    token = thaw(ref.kwargs).get("token", "")
    _IN_MEMORY.pop(token, None)
    _IN_MEMORY_EXAMPLES.pop(token, None)


def in_memory_model(token: str) -> Any:
    """The factory behind ``register_in_memory``: returns the registered object itself."""
    try:
        return _IN_MEMORY[token]
    except KeyError:
        raise ModelLoadError(
            f"in-memory model {token!r} exists only in the process that registered it"
        ) from None
