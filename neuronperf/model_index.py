"""The model index: a JSON file that lists compiled artifacts and the settings they were built with.

The format is NeuronPerf's, so existing index files and scripts keep working::

    {"version": "0.1.0",
     "model_configs": [{"filename": "models/model_b1_p1_x.pt", "input_idx": 0,
                        "batch_size": 1, "pipeline_size": 1, "compile_s": 5.3}]}

Configs may carry extra keys; every function here preserves them.

Where a ``filename`` points: an absolute filename is used as is. A relative filename in an index
*file* is relative to that file's folder (so a run folder can be moved or copied whole); in an
*in-memory* index it is relative to the working directory. Every function that takes an index
also takes the path of an index file, and then applies the file rule. So:

- ``load`` returns the file's content unchanged, and ``save`` writes relative filenames as given
  (``load`` then ``save`` to the same file is a faithful round trip).
- ``filter`` and ``append`` make the relative filenames of an index given *by path* absolute, so
  their in-memory result points at the same artifacts from anywhere.
- ``save`` writes an absolute filename inside the new file's folder as a relative one, so a
  ``filter``/``save`` into a run folder stays movable.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import string
import warnings
from copy import deepcopy
from typing import Any, Optional, Union

from neuronperf.errors import (
    DeleteRefused,
    ModelIndexError,
    NeuronPerfError,
    OutputWriteFailed,
    UsageError,
)
from neuronperf.util.atomic import atomic_write_text
from neuronperf.util.guarded_paths import guarded_folders, is_within, physical, refusal_reason
from neuronperf.version import __version__

#: The ``version`` written into new indexes (NeuronPerf wrote its package version there too).
INDEX_VERSION = __version__

#: The keys every config written by ``create`` has, in the order they are written.
STANDARD_KEYS = ("filename", "input_idx", "batch_size", "pipeline_size", "compile_s")

#: An index held in memory: ``{"version": str, "model_configs": [config, ...]}``.
Index = dict[str, Any]
#: What every function here accepts as an index: the dict, or the path of an index file.
IndexLike = Union[Index, str, "os.PathLike[str]"]

_IN_MEMORY = "<in-memory index>"
_NAME_CHARS = string.ascii_lowercase + string.digits


# --------------------------------------------------------------------------------------------
# The public API (NeuronPerf's names and signatures)
# --------------------------------------------------------------------------------------------


def create(
    filename: Union[str, os.PathLike[str]],
    input_idx: int = 0,
    batch_size: int = 1,
    pipeline_size: int = 1,
    compile_s: Optional[float] = None,
    **extra: Any,
) -> Index:
    """Return a new in-memory index with one config for the artifact ``filename``.

    Extra keyword arguments become extra keys of the config.
    """
    if not isinstance(filename, (str, os.PathLike)):
        raise UsageError(f"create(): filename must be a path, got {_json_type(filename)}")
    config: dict[str, Any] = {
        "filename": os.fspath(filename),
        "input_idx": input_idx,
        "batch_size": batch_size,
        "pipeline_size": pipeline_size,
        "compile_s": compile_s,
    }
    config.update(extra)
    index = {"version": INDEX_VERSION, "model_configs": [config]}
    _check_index(index, "create()", UsageError)
    return index


def save(index: IndexLike, filename: Union[str, os.PathLike[str], None] = None, *, root: Optional[str] = None) -> str:
    """Write ``index`` to ``filename`` (default: a new ``model_<8 chars>.json`` in the working
    directory) atomically, and return the path written. With ``root`` (a folder that holds
    ``filename``, such as a sweep's output_dir), no symbolic link below it is followed."""
    data, source = _resolve(index)
    if filename is None:
        path = _unused_name()
    elif isinstance(filename, (str, os.PathLike)) and os.fspath(filename):
        path = os.fspath(filename)
    else:
        raise UsageError(f"save(): filename must be a non-empty path, got {filename!r}")
    configs = data["model_configs"]
    if source is not None:  # copying an index file: keep each filename pointing at its artifact
        configs = _anchor(configs, source)
    out = dict(data)
    out["model_configs"] = _relative_inside(configs, os.path.dirname(os.path.abspath(path)))
    _write_index(path, out, root)
    return path


def load(filename: IndexLike) -> Index:
    """Read an index file and return its content unchanged (relative filenames stay relative
    to the file's folder). Raise ``ModelIndexError`` naming the file if it is not an index."""
    data, _ = _resolve(filename)
    return deepcopy(data)


def append(*indexes: IndexLike) -> Index:
    """Return a new index holding the configs of all ``indexes`` in order; exact duplicates are
    dropped with a warning."""
    if not indexes:
        raise UsageError("append() needs at least one index")
    merged: list[dict[str, Any]] = []
    seen = set()
    dropped: list[str] = []
    for index in indexes:
        data, source = _resolve(index)
        for config in _anchor(data["model_configs"], source):
            identity = json.dumps(config, sort_keys=True, default=repr)
            if identity in seen:
                dropped.append(str(config["filename"]))
                continue
            seen.add(identity)
            merged.append(config)
    if dropped:
        warnings.warn(
            f"append: dropped {len(dropped)} duplicate config(s): {', '.join(dropped)}",
            stacklevel=2,
        )
    return {"version": INDEX_VERSION, "model_configs": merged}


def filter(index: IndexLike, **criteria: Any) -> Index:
    """Return a new index with the configs that match every criterion; ``index`` is not changed.

    A criterion names a config key, singular (``batch_size=1``) or plural (``batch_sizes=[1, 2]``);
    its value is one allowed value or a list of them. ``None`` means "any value", as everywhere in
    NeuronPerf's API (match a null value with ``[None]``). A config without the key does not
    match. A key that no config has and that is not a standard key raises ``UsageError``.
    """
    data, source = _resolve(index)
    configs = data["model_configs"]
    known = set(STANDARD_KEYS).union(*(config.keys() for config in configs))
    tests = []
    for name, value in criteria.items():
        key = _criterion_key(name, known)  # checked even for None, so a typo never passes
        if value is not None:
            tests.append((key, _allowed_values(value)))
    kept = [
        config
        for config in configs
        if all(key in config and any(config[key] == v for v in allowed) for key, allowed in tests)
    ]
    # Match filenames as written in the file, then anchor them so the result works from anywhere.
    return {"version": INDEX_VERSION, "model_configs": _anchor(kept, source)}


def copy(
    index: IndexLike,
    new_index_name: Union[str, os.PathLike[str]],
    new_index_dir: Union[str, os.PathLike[str]],
) -> str:
    """Copy every artifact of ``index`` (files or folders) into ``new_index_dir``, write an index
    named ``new_index_name`` there that points at the copies, and return its path.

    Nothing in ``new_index_dir`` is overwritten: an existing file of the same name raises
    ``ModelIndexError`` before anything is copied. A config that names no file by design (a
    compiler without artifacts, such as eager) is copied unchanged; any other missing artifact
    is an error, since the new index would point at nothing.
    """
    data, source = _resolve(index)
    new_dir = os.fspath(new_index_dir)
    new_index_path = os.path.join(new_dir, _index_file_name(new_index_name))
    if os.path.lexists(new_index_path):
        raise ModelIndexError(f"{new_index_path}: already exists; copy never overwrites")

    # Plan everything first, so a collision is reported before a single byte is copied.
    new_dir_physical = os.path.realpath(new_dir)
    taken = {os.path.normcase(os.path.basename(new_index_path))}
    copies: dict[str, str] = {}  # source artifact (absolute) -> file name in new_dir
    new_configs = []
    for config in data["model_configs"]:
        new_config = deepcopy(config)
        artifact = artifact_path(source, config)
        if not os.path.exists(artifact):
            if not names_no_file(config):
                raise ModelIndexError(
                    f"{source or _IN_MEMORY}: artifact not found: {artifact}; copy needs every "
                    "artifact (remove that config with filter, or rebuild it)"
                )
            new_configs.append(new_config)
            continue
        if artifact not in copies:
            real = os.path.realpath(artifact)
            if os.path.isdir(real) and (new_dir_physical == real or is_within(new_dir_physical, real)):
                raise ModelIndexError(
                    f"{new_dir}: is inside the artifact folder {artifact}; cannot copy a folder into itself"
                )
            name = _free_name(os.path.basename(artifact), taken)
            target = os.path.join(new_dir, name)
            if os.path.lexists(target):
                raise ModelIndexError(
                    f"{target}: already exists; copy never overwrites (copying {artifact})"
                )
            taken.add(os.path.normcase(name))
            copies[artifact] = name
        new_config["filename"] = copies[artifact]
        new_configs.append(new_config)

    try:
        os.makedirs(new_dir, exist_ok=True)
    except OSError as e:
        raise ModelIndexError(f"{new_dir}: cannot create folder: {e.strerror}") from e
    done: list[str] = []
    try:
        for artifact, name in copies.items():
            target = os.path.join(new_dir, name)
            _copy_artifact(artifact, target)
            done.append(target)
        out = dict(data)
        out["model_configs"] = new_configs
        _write_index(new_index_path, out)
    except BaseException:
        # Leave the target folder as we found it: a half-copied index is worse than none.
        for target in done:
            _remove(target)
        raise
    return new_index_path


def move(
    index: IndexLike,
    new_index_name: Union[str, os.PathLike[str]],
    new_index_dir: Union[str, os.PathLike[str]],
) -> str:
    """``copy`` the index and its artifacts to ``new_index_dir``, then ``delete`` the originals;
    return the new index's path. Refuses before copying if ``delete`` would refuse."""
    deletion_targets(index)
    new_index_path = copy(index, new_index_name, new_index_dir)
    delete(index)
    return new_index_path


def delete(index: IndexLike, allow_outside: bool = False) -> list[str]:
    """Remove every artifact ``index`` names and then the index file itself; return what was
    removed. Symlinks are unlinked, never followed. Refuses with ``DeleteRefused``, removing
    nothing, if any filename resolves to a folder that must never be removed, or (unless
    ``allow_outside``) lies outside the index's folder (see ``deletion_targets``). Missing
    artifacts only warn."""
    targets = deletion_targets(index, allow_outside)
    removed: list[str] = []
    missing: list[str] = []
    for path in targets:
        if not os.path.lexists(path):
            missing.append(path)
            continue
        try:
            _remove(path)
        except OSError as e:
            done = f"; removed so far: {', '.join(removed)}" if removed else "; nothing removed"
            raise ModelIndexError(f"{path}: cannot remove: {e.strerror}{done}") from e
        removed.append(path)
    if missing:
        warnings.warn(
            f"delete: {len(missing)} path(s) did not exist (already removed, or an eager config "
            f"that names no file): {', '.join(missing)}",
            stacklevel=2,
        )
    return removed


# --------------------------------------------------------------------------------------------
# Helpers for later stages and the CLI
# --------------------------------------------------------------------------------------------


def artifact_path(
    index_path: Union[str, os.PathLike[str], None], config: dict[str, Any]
) -> str:
    """Return the absolute path of ``config``'s artifact: relative filenames resolve against the
    folder of ``index_path``, or against the working directory when it is None."""
    filename = config.get("filename") if isinstance(config, dict) else None
    if not isinstance(filename, str) or not filename:
        raise ModelIndexError(f"{index_path or _IN_MEMORY}: config has no 'filename': {config!r}")
    return os.path.abspath(os.path.join(_base_dir(index_path), filename))


#: Compilers that build no artifact: their configs' ``filename`` names no file.
NO_ARTIFACT_COMPILERS = ("eager", "inductor")


def names_no_file(config: dict[str, Any]) -> bool:
    """Whether ``config`` names no file by design: its compiler builds no artifact, or its
    filename has the ``<compiler>:<name>`` form that sweeps write for such configs."""
    # "eager:mlp-bs1-p1-0a1b2c3d"; a Windows drive ("C:\\m.pt") has one letter and a separator.
    no_file_name = re.fullmatch(r"[A-Za-z][\w.-]+:[^/\\]+", str(config.get("filename", ""))) is not None
    return config.get("compiler") in NO_ARTIFACT_COMPILERS or no_file_name


def artifact_paths(index: IndexLike) -> list[str]:
    """Return the absolute artifact path of each config of ``index``, in config order."""
    data, source = _resolve(index)
    return [artifact_path(source, config) for config in data["model_configs"]]


def deletion_targets(index: IndexLike, allow_outside: bool = False) -> list[str]:
    """Return the paths ``delete(index)`` would remove (artifacts, then the index file).

    Raise ``DeleteRefused`` listing every offending config if a filename resolves to the
    filesystem root, the home folder or a folder above it, the index's own folder or a folder
    above it, or the working directory or a folder above it; and, unless ``allow_outside``,
    if it lies outside the index file's folder (the working directory for an in-memory index):
    an index names files by relative path, so ``"../other_project"`` or ``"/srv/data"`` in one
    is far more likely a mistake (or a hostile file) than an artifact of its own.
    """
    data, source = _resolve(index)
    guarded = guarded_folders(None if source is None else _base_dir(source))
    home = os.path.realpath(_base_dir(source))
    targets: list[str] = []
    problems: list[str] = []
    outside: list[str] = []
    for i, config in enumerate(data["model_configs"]):
        path = physical(artifact_path(source, config))
        reason = refusal_reason(path, guarded)
        if reason:
            problems.append(f"model_configs[{i}].filename {config['filename']!r} is {path}, {reason}")
        elif not allow_outside and not is_within(path, home):
            outside.append(f"model_configs[{i}].filename {config['filename']!r} is {path}")
        elif path not in targets:
            targets.append(path)
    if outside:
        where = "the index's folder" if source is not None else "the working directory"
        problems.append(
            f"outside {where} {home}: " + ", ".join(outside)
            + " (pass allow_outside=True, or --allow-outside, to remove such paths too)"
        )
    if problems:
        raise DeleteRefused(
            f"{source or _IN_MEMORY}: delete refused, nothing was removed: " + "; ".join(problems)
        )
    if source is not None:
        index_file = physical(os.path.abspath(source))
        if index_file not in targets:
            targets.append(index_file)
    return targets


# --------------------------------------------------------------------------------------------
# Internals
# --------------------------------------------------------------------------------------------


def _resolve(index: Any) -> tuple[Index, Optional[str]]:
    """Return (index dict, path of its file or None); a dict is validated, not copied."""
    if isinstance(index, (str, os.PathLike)):
        path = os.fspath(index)
        return _read(path), path
    if isinstance(index, dict):
        return _check_index(index, _IN_MEMORY, ModelIndexError), None
    raise UsageError(
        f"expected a model index (a dict) or the path of an index file, got {_json_type(index)}"
    )


def _read(path: str) -> Index:
    if not path:
        raise ModelIndexError("model index path is empty")
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        raise ModelIndexError(f"{path}: no such model index file") from None
    except IsADirectoryError:
        raise ModelIndexError(f"{path}: is a folder, not a model index file") from None
    except UnicodeDecodeError:
        raise ModelIndexError(f"{path}: not a model index (not UTF-8 text)") from None
    except OSError as e:
        raise ModelIndexError(f"{path}: cannot read model index: {e.strerror}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ModelIndexError(f"{path}:{e.lineno}:{e.colno}: not a model index: invalid JSON: {e.msg}") from None
    return _check_index(data, path, ModelIndexError)


def _check_index(data: Any, source: str, error: type[NeuronPerfError]) -> Index:
    """Raise ``error`` naming ``source`` unless ``data`` has the shape of a model index."""

    def fail(message: str) -> NeuronPerfError:
        return error(f"{source}: {message}")

    if not isinstance(data, dict):
        raise fail(f"not a model index: expected a JSON object with 'model_configs', got {_json_type(data)}")
    if "model_configs" not in data:
        raise fail("not a model index: missing 'model_configs'")
    configs = data["model_configs"]
    if not isinstance(configs, list):
        raise fail(f"model_configs: expected a list, got {_json_type(configs)}")
    for i, config in enumerate(configs):
        where = f"model_configs[{i}]"
        if not isinstance(config, dict):
            raise fail(f"{where}: expected an object, got {_json_type(config)}")
        filename = config.get("filename")
        if "filename" not in config:
            raise fail(f"{where}: missing 'filename'")
        if not isinstance(filename, str) or not filename:
            raise fail(f"{where}.filename: expected a non-empty string, got {filename!r}")
        for key, minimum in (("input_idx", 0), ("batch_size", 1), ("pipeline_size", 1)):
            value = config.get(key)
            valid = isinstance(value, int) and not isinstance(value, bool) and value >= minimum
            if key in config and not valid:
                raise fail(f"{where}.{key}: expected an integer >= {minimum}, got {value!r}")
        compile_s = config.get("compile_s")
        if compile_s is not None and (not isinstance(compile_s, (int, float)) or isinstance(compile_s, bool)):
            raise fail(f"{where}.compile_s: expected a number of seconds or null, got {compile_s!r}")
    return data


def _write_index(path: str, index: Index, root: Optional[str] = None) -> None:
    """Write ``index`` as JSON via a temporary file in the same folder, so readers only ever
    see the old file or the complete new one."""
    # "version" first and "model_configs" second, as NeuronPerf wrote them; other keys after.
    ordered = {"version": index.get("version", INDEX_VERSION), "model_configs": index["model_configs"]}
    ordered.update((k, v) for k, v in index.items() if k not in ordered)
    try:
        text = json.dumps(ordered, indent=4, allow_nan=False) + "\n"
    except (TypeError, ValueError) as e:
        raise UsageError(f"{path}: cannot save model index: a value is not JSON: {e}") from None
    try:
        atomic_write_text(path, text, root=root)
    except OutputWriteFailed as e:
        if e.out_of_space:
            raise  # a full disk is not a wrong index path: it keeps its own exit code
        raise ModelIndexError(f"{path}: cannot write model index: {e.reason}") from None
    except OSError as e:
        raise ModelIndexError(f"{path}: cannot write model index: {e.strerror}") from None


def _unused_name() -> str:
    """A ``model_<8 chars [a-z0-9]>.json`` name that no file in the working directory has."""
    while True:
        name = "model_" + "".join(secrets.choice(_NAME_CHARS) for _ in range(8)) + ".json"
        if not os.path.lexists(name):
            return name


def _base_dir(index_path: Union[str, os.PathLike[str], None]) -> str:
    if index_path is None:
        return os.getcwd()
    return os.path.dirname(os.path.abspath(os.fspath(index_path)))


def _anchor(configs: list[dict[str, Any]], index_path: Optional[str]) -> list[dict[str, Any]]:
    """Deep-copy ``configs``; if they come from the index file ``index_path``, make their relative
    filenames absolute, so they no longer depend on where that file was."""
    out = deepcopy(configs)
    if index_path is not None:
        for config in out:
            config["filename"] = artifact_path(index_path, config)
    return out


def _relative_inside(configs: list[dict[str, Any]], folder: str) -> list[dict[str, Any]]:
    """Deep-copy ``configs``, writing absolute filenames inside ``folder`` relative to it."""
    out = deepcopy(configs)
    for config in out:
        filename = config["filename"]
        if os.path.isabs(filename) and is_within(_normal(filename), _normal(folder)):
            config["filename"] = os.path.relpath(filename, folder)
    return out


def _normal(path: str) -> str:
    return os.path.normcase(os.path.abspath(path))


def _criterion_key(name: str, known: set) -> str:
    if name in known:
        return name
    if name.endswith("s") and name[:-1] in known:
        return name[:-1]
    raise UsageError(
        f"filter: unknown key {name!r}; the configs have: {', '.join(sorted(known))} "
        "(a plural form such as batch_sizes works too)"
    )


def _allowed_values(value: Any) -> list[Any]:
    if isinstance(value, (list, tuple, set, frozenset, range)):
        return list(value)
    return [value]


def _index_file_name(name: Union[str, os.PathLike[str]]) -> str:
    if not isinstance(name, (str, os.PathLike)):
        raise UsageError(f"new_index_name must be a file name, got {_json_type(name)}")
    text = os.fspath(name)
    if not text or text in (".", "..") or os.path.basename(text) != text or (os.altsep and os.altsep in text):
        raise UsageError(
            f"new_index_name must be a plain file name (the folder is new_index_dir), got {text!r}"
        )
    return text if os.path.splitext(text)[1] else text + ".json"


def _free_name(name: str, taken: set) -> str:
    """``name``, or ``stem-2.ext``, ``stem-3.ext``, ... if an earlier artifact of this copy took it."""
    stem, ext = os.path.splitext(name)
    candidate, n = name, 1
    while os.path.normcase(candidate) in taken:
        n += 1
        candidate = f"{stem}-{n}{ext}"
    return candidate


def _copy_artifact(source: str, target: str) -> None:
    """Copy a file or a folder (symlinks inside a folder stay symlinks) via a temporary name."""
    folder = os.path.dirname(os.path.abspath(target))
    tmp = os.path.join(folder, f".{os.path.basename(target)}.{secrets.token_hex(4)}.tmp")
    try:
        if os.path.isdir(source):
            shutil.copytree(source, tmp, symlinks=True)
        else:
            shutil.copy2(source, tmp)
        os.replace(tmp, target)
    except BaseException as e:
        if os.path.lexists(tmp):
            _remove(tmp)
        if isinstance(e, OSError):
            raise ModelIndexError(f"{target}: cannot copy {source}: {e.strerror or e}") from None
        raise


def _remove(path: str) -> None:
    """Remove a file, a symlink (the link only) or a folder tree."""
    if os.path.islink(path) or not os.path.isdir(path):
        os.unlink(path)
    else:
        shutil.rmtree(path)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__
