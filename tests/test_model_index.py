"""neuronperf.model_index: each function on real files in temporary folders."""

from __future__ import annotations

import json
import os
import re
import stat
import warnings
from copy import deepcopy
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import neuronperf
from neuronperf import model_index
from neuronperf.errors import DeleteRefused, ModelIndexError, UsageError

pytestmark = pytest.mark.pure


def write_artifact(path: Path, text: str = "weights") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def write_folder_artifact(path: Path) -> Path:
    """A folder artifact like a TensorFlow SavedModel: nested files."""
    (path / "variables").mkdir(parents=True)
    (path / "saved_model.pb").write_text("graph")
    (path / "variables" / "variables.data").write_text("data")
    return path


def make_run(folder: Path) -> Path:
    """A run folder as the compile stage leaves it: models/ and model_index.json; returns the index path."""
    write_artifact(folder / "models" / "model_b1_p1_aaaa1111.pt", "b1")
    write_artifact(folder / "models" / "model_b2_p1_bbbb2222.pt", "b2")
    write_folder_artifact(folder / "models" / "model_b4_p2_cccc3333")
    index = model_index.append(
        model_index.create("models/model_b1_p1_aaaa1111.pt", batch_size=1, compile_s=1.5),
        model_index.create("models/model_b2_p1_bbbb2222.pt", input_idx=1, batch_size=2, compile_s=2.5),
        model_index.create(
            "models/model_b4_p2_cccc3333", input_idx=2, batch_size=4, pipeline_size=2, compile_s=3.0,
            compiler="torchscript",
        ),
    )
    path = folder / "model_index.json"
    path.write_text(json.dumps(index, indent=4) + "\n")
    return path


def read(path) -> dict:
    with open(path) as f:
        return json.load(f)


# ------------------------------------------------------------------------------- create


def test_create_has_the_guide_keys_and_defaults():
    index = model_index.create("/path/to/model")
    assert index == {
        "version": neuronperf.__version__,
        "model_configs": [
            {"filename": "/path/to/model", "input_idx": 0, "batch_size": 1, "pipeline_size": 1, "compile_s": None}
        ],
    }
    assert neuronperf.__version__ == model_index.INDEX_VERSION


def test_create_keeps_extra_keys_and_accepts_pathlike():
    index = model_index.create(Path("models") / "m.pt", batch_size=8, compile_s=4.25, compiler="torchscript", seq_len=128)
    config = index["model_configs"][0]
    assert config["filename"] == os.path.join("models", "m.pt")
    assert (config["batch_size"], config["compile_s"]) == (8, 4.25)
    assert (config["compiler"], config["seq_len"]) == ("torchscript", 128)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"filename": 5}, "filename must be a path"),
        ({"filename": "m.pt", "batch_size": 0}, "batch_size: expected an integer >= 1"),
        ({"filename": "m.pt", "pipeline_size": "2"}, "pipeline_size"),
        ({"filename": "m.pt", "input_idx": -1}, "input_idx: expected an integer >= 0"),
        ({"filename": "m.pt", "batch_size": True}, "batch_size"),
        ({"filename": "m.pt", "compile_s": "slow"}, "compile_s"),
        ({"filename": ""}, "filename"),
    ],
)
def test_create_rejects_bad_arguments(kwargs, message):
    with pytest.raises(UsageError, match=message):
        model_index.create(**kwargs)


# ------------------------------------------------------------------------------- save


def test_save_without_a_name_writes_model_random_json_in_the_cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    index = model_index.create("/path/to/model", batch_size=1)
    first = model_index.save(index)
    second = model_index.save(index)
    for name in (first, second):
        assert re.fullmatch(r"model_[a-z0-9]{8}\.json", name), name
        assert read(tmp_path / name) == index
    assert first != second
    assert sorted(os.listdir(tmp_path)) == sorted([first, second])  # no temporary files left


def test_save_returns_the_path_and_the_file_matches_the_guide_layout(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    index = model_index.create("m.pt", compile_s=5.32, note="x")
    path = model_index.save(index, tmp_path / "idx.json")
    assert path == os.fspath(tmp_path / "idx.json")
    text = (tmp_path / "idx.json").read_text()
    assert list(json.loads(text)) == ["version", "model_configs"]
    assert json.loads(text)["model_configs"][0] == index["model_configs"][0]
    assert text.endswith("\n")


def test_save_writes_relative_filenames_as_given_and_absolute_ones_inside_its_folder_relative(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    index = model_index.append(
        model_index.create("models/a.pt"),
        model_index.create(str(tmp_path / "runs" / "models" / "b.pt")),
        model_index.create(str(tmp_path / "shared" / "c.pt")),
    )
    path = model_index.save(index, "runs/idx.json")  # creates runs/
    assert [c["filename"] for c in read(path)["model_configs"]] == [
        "models/a.pt",  # relative: kept, and now relative to runs/ (the file rule)
        os.path.join("models", "b.pt"),  # absolute inside runs/: relative, so runs/ can move
        str(tmp_path / "shared" / "c.pt"),  # absolute outside: kept
    ]
    assert model_index.artifact_paths(path) == [
        str(tmp_path / "runs" / "models" / "a.pt"),
        str(tmp_path / "runs" / "models" / "b.pt"),
        str(tmp_path / "shared" / "c.pt"),
    ]
    assert index["model_configs"][1]["filename"] == str(tmp_path / "runs" / "models" / "b.pt")  # untouched


def test_load_then_save_is_a_faithful_round_trip_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = make_run(tmp_path / "runs" / "x")
    before = path.read_text()
    model_index.save(model_index.load(path), path)
    assert path.read_text() == before


def test_save_of_an_index_path_copies_it_with_filenames_still_pointing_at_the_artifacts(tmp_path):
    source = make_run(tmp_path / "run")
    target = model_index.save(source, tmp_path / "elsewhere" / "copy.json")
    assert model_index.artifact_paths(target) == model_index.artifact_paths(source)


def test_save_keeps_the_old_file_intact_when_the_new_content_cannot_be_written(tmp_path):
    path = tmp_path / "idx.json"
    good = model_index.create("m.pt")
    model_index.save(good, path)
    os.chmod(path, 0o640)
    bad = model_index.create("m.pt", shape=object())  # not JSON
    with pytest.raises(UsageError, match="not JSON"):
        model_index.save(bad, path)
    nan = model_index.create("m.pt", score=float("nan"))  # JSON without NaN: other tools must read it
    with pytest.raises(UsageError):
        model_index.save(nan, path)
    assert read(path) == good
    assert os.listdir(tmp_path) == ["idx.json"]
    model_index.save(model_index.create("n.pt"), path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640  # replacing keeps the file's mode


def test_save_to_a_folder_path_is_a_typed_error(tmp_path):
    (tmp_path / "taken").mkdir()
    with pytest.raises(ModelIndexError, match="taken"):
        model_index.save(model_index.create("m.pt"), tmp_path / "taken")


# ------------------------------------------------------------------------------- load


def test_load_returns_the_file_unchanged(tmp_path):
    path = make_run(tmp_path)
    loaded = model_index.load(path)
    assert loaded == read(path)
    assert loaded["model_configs"][0]["filename"] == "models/model_b1_p1_aaaa1111.pt"
    assert model_index.load(str(path)) == loaded


@pytest.mark.parametrize(
    "content, message",
    [
        ("{not json", "invalid JSON"),
        ("[1, 2]", "expected a JSON object with 'model_configs', got a list"),
        ('"text"', "got a string"),
        ('{"version": "1"}', "missing 'model_configs'"),
        ('{"model_configs": {}}', "model_configs: expected a list"),
        ('{"model_configs": [3]}', r"model_configs\[0\]: expected an object"),
        ('{"model_configs": [{"batch_size": 1}]}', r"model_configs\[0\]: missing 'filename'"),
        ('{"model_configs": [{"filename": 7}]}', r"model_configs\[0\]\.filename"),
        ('{"model_configs": [{"filename": "a"}, {"filename": "b", "batch_size": -2}]}', r"model_configs\[1\]\.batch_size"),
    ],
)
def test_load_rejects_what_is_not_an_index_naming_the_file(tmp_path, content, message):
    path = tmp_path / "broken_index.json"
    path.write_text(content)
    with pytest.raises(ModelIndexError, match=message) as info:
        model_index.load(path)
    assert str(path) in str(info.value)
    assert "\n" not in str(info.value)


def test_load_of_a_missing_file_a_folder_or_binary_names_it(tmp_path):
    with pytest.raises(ModelIndexError, match="no such model index file"):
        model_index.load(tmp_path / "absent.json")
    with pytest.raises(ModelIndexError, match="is a folder"):
        model_index.load(tmp_path)
    (tmp_path / "bin.json").write_bytes(b"\xff\xfe\x00\x81")
    with pytest.raises(ModelIndexError, match="bin.json"):
        model_index.load(tmp_path / "bin.json")


def test_functions_reject_what_is_neither_an_index_nor_a_path():
    with pytest.raises(UsageError, match="got a number"):
        model_index.filter(3, batch_size=1)
    with pytest.raises(ModelIndexError, match="in-memory index"):
        model_index.filter({"configs": []}, batch_size=1)


# ------------------------------------------------------------------------------- append


def test_append_concatenates_in_order_and_keeps_extra_keys():
    a = model_index.create("a.pt", batch_size=1, tag="x")
    b = model_index.create("b.pt", batch_size=2)
    before = deepcopy([a, b])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no duplicates, so no warning
        merged = model_index.append(a, b)
    assert [c["filename"] for c in merged["model_configs"]] == ["a.pt", "b.pt"]
    assert merged["model_configs"][0]["tag"] == "x"
    assert [a, b] == before


def test_append_drops_exact_duplicates_with_a_warning():
    a = model_index.create("a.pt", batch_size=1)
    a_other_size = model_index.create("a.pt", batch_size=2)
    with pytest.warns(UserWarning, match="dropped 1 duplicate"):
        merged = model_index.append(a, a_other_size, deepcopy(a))
    assert [c["batch_size"] for c in merged["model_configs"]] == [1, 2]


def test_append_of_index_files_in_different_folders_points_at_each_artifact(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    first = make_run(tmp_path / "run1")
    second = make_run(tmp_path / "run2")
    merged = model_index.append(first, str(second))
    assert len(merged["model_configs"]) == 6  # same names, different folders: not duplicates
    assert model_index.artifact_paths(merged) == model_index.artifact_paths(first) + model_index.artifact_paths(second)
    saved = model_index.save(merged, "all.json")
    assert model_index.artifact_paths(saved) == model_index.artifact_paths(merged)
    assert read(saved)["model_configs"][0]["filename"] == os.path.join("run1", "models", "model_b1_p1_aaaa1111.pt")


def test_append_needs_an_index():
    with pytest.raises(UsageError):
        model_index.append()


# ------------------------------------------------------------------------------- filter


@pytest.fixture
def sizes_index() -> dict:
    return model_index.append(
        *(
            model_index.create(f"m_b{b}_p{p}.pt", input_idx=i, batch_size=b, pipeline_size=p, compiler=c)
            for i, b in enumerate([1, 2, 3])
            for p, c in [(1, "eager"), (2, "torchscript")]
        )
    )


def names(index: dict) -> list:
    return [c["filename"] for c in index["model_configs"]]


def test_filter_plural_key_with_a_list(sizes_index):
    result = model_index.filter(sizes_index, batch_sizes=[1, 2])
    assert names(result) == ["m_b1_p1.pt", "m_b1_p2.pt", "m_b2_p1.pt", "m_b2_p2.pt"]


def test_filter_singular_key_with_a_scalar(sizes_index):
    assert names(model_index.filter(sizes_index, batch_size=2)) == ["m_b2_p1.pt", "m_b2_p2.pt"]


def test_filter_plural_key_with_a_scalar_and_singular_key_with_a_list(sizes_index):
    assert names(model_index.filter(sizes_index, batch_sizes=3)) == ["m_b3_p1.pt", "m_b3_p2.pt"]
    assert names(model_index.filter(sizes_index, pipeline_size=(2,), batch_size=[1, 3])) == [
        "m_b1_p2.pt",
        "m_b3_p2.pt",
    ]


def test_filter_on_extra_keys_filenames_and_input_idxs(sizes_index):
    assert names(model_index.filter(sizes_index, compiler="eager", input_idxs=[0, 2])) == [
        "m_b1_p1.pt",
        "m_b3_p1.pt",
    ]
    assert names(model_index.filter(sizes_index, filenames=["m_b2_p2.pt", "nope.pt"])) == ["m_b2_p2.pt"]
    assert names(model_index.filter(sizes_index, filename="m_b1_p1.pt")) == ["m_b1_p1.pt"]


def test_filter_with_no_criteria_or_an_empty_list(sizes_index):
    assert model_index.filter(sizes_index) == sizes_index
    assert model_index.filter(sizes_index, batch_sizes=[])["model_configs"] == []


def test_filter_never_mutates_its_argument_and_the_result_is_independent(sizes_index):
    before = deepcopy(sizes_index)
    result = model_index.filter(sizes_index, batch_sizes=[1])
    assert sizes_index == before
    result["model_configs"][0]["batch_size"] = 99
    result["model_configs"].clear()
    assert sizes_index == before


def test_filter_unknown_key_is_an_error_naming_the_known_keys(sizes_index):
    with pytest.raises(UsageError, match="unknown key 'batchsize'.*batch_size.*compiler"):
        model_index.filter(sizes_index, batchsize=1)


def test_filter_key_only_some_configs_have_matches_only_those():
    index = model_index.append(model_index.create("a.pt", seq_len=128), model_index.create("b.pt"))
    assert names(model_index.filter(index, seq_lens=[128, 256])) == ["a.pt"]
    # compile_s is a standard key: an index written by hand without it filters to nothing.
    handmade = {"version": "x", "model_configs": [{"filename": "a.pt"}]}
    assert model_index.filter(handmade, compile_s=[None])["model_configs"] == []


def test_filter_none_means_any_value_and_a_list_with_none_matches_null(sizes_index):
    # Wrappers pass their optional arguments straight through: batch_sizes=None filters nothing.
    assert model_index.filter(sizes_index, batch_sizes=None, pipeline_size=None) == sizes_index
    with pytest.raises(UsageError, match="unknown key"):
        model_index.filter(sizes_index, batchsizes=None)  # a typo is still caught
    index = model_index.append(model_index.create("a.pt", compile_s=1.0), model_index.create("b.pt"))
    assert names(model_index.filter(index, compile_s=[None])) == ["b.pt"]
    assert names(model_index.filter(index, compile_s=[None, 1.0])) == ["a.pt", "b.pt"]


def test_filter_of_an_index_file_keeps_pointing_at_its_artifacts(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = make_run(tmp_path / "runs" / "x")
    before = path.read_text()
    result = model_index.filter(str(path), batch_sizes=[1, 4])
    assert [c["batch_size"] for c in result["model_configs"]] == [1, 4]
    # Relative names from the file become absolute: the result works from any folder.
    assert all(os.path.isabs(c["filename"]) for c in result["model_configs"])
    assert model_index.artifact_paths(result) == [
        str(tmp_path / "runs" / "x" / "models" / "model_b1_p1_aaaa1111.pt"),
        str(tmp_path / "runs" / "x" / "models" / "model_b4_p2_cccc3333"),
    ]
    assert all(os.path.exists(p) for p in model_index.artifact_paths(result))
    # Filenames are matched as written in the file.
    assert len(model_index.filter(path, filename="models/model_b2_p1_bbbb2222.pt")["model_configs"]) == 1
    assert path.read_text() == before


@settings(max_examples=60, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 8), min_size=0, max_size=10),
    wanted=st.one_of(st.integers(1, 8), st.lists(st.integers(1, 8), max_size=4)),
)
def test_filter_keeps_exactly_the_matching_configs_in_order(sizes, wanted):
    index = {"version": "x", "model_configs": [{"filename": f"m{i}.pt", "batch_size": b} for i, b in enumerate(sizes)]}
    allowed = wanted if isinstance(wanted, list) else [wanted]
    expected = [c for c in index["model_configs"] if c["batch_size"] in allowed]
    assert model_index.filter(index, batch_sizes=wanted)["model_configs"] == expected
    assert model_index.filter(index, batch_size=wanted)["model_configs"] == expected


# ------------------------------------------------------------------------------- copy


def test_copy_copies_files_and_folders_and_writes_an_index_of_the_copies(tmp_path):
    source = make_run(tmp_path / "run")
    inner_target = write_artifact(tmp_path / "outside.txt", "shared")
    os.symlink(inner_target, tmp_path / "run" / "models" / "model_b4_p2_cccc3333" / "link.txt")
    before = source.read_text()

    new_path = model_index.copy(source, "copied.json", tmp_path / "dest")

    assert new_path == os.path.join(os.fspath(tmp_path / "dest"), "copied.json")
    new = read(new_path)
    assert [c["filename"] for c in new["model_configs"]] == [
        "model_b1_p1_aaaa1111.pt",
        "model_b2_p1_bbbb2222.pt",
        "model_b4_p2_cccc3333",
    ]
    # Everything but the filename is kept.
    for old, copied in zip(read(source)["model_configs"], new["model_configs"]):
        assert {k: v for k, v in old.items() if k != "filename"} == {k: v for k, v in copied.items() if k != "filename"}
    dest = tmp_path / "dest"
    assert (dest / "model_b1_p1_aaaa1111.pt").read_text() == "b1"
    assert (dest / "model_b4_p2_cccc3333" / "variables" / "variables.data").read_text() == "data"
    assert os.readlink(dest / "model_b4_p2_cccc3333" / "link.txt") == str(inner_target)
    assert sorted(os.listdir(dest)) == sorted(["copied.json", *(c["filename"] for c in new["model_configs"])])
    # The original is untouched.
    assert source.read_text() == before
    assert all(os.path.exists(p) for p in model_index.artifact_paths(source))


def test_copy_adds_json_to_a_bare_name_and_rejects_paths_as_names(tmp_path):
    source = make_run(tmp_path / "run")
    assert model_index.copy(source, "small", tmp_path / "d1").endswith("small.json")
    for bad in ("sub/name.json", "..", ""):
        with pytest.raises(UsageError, match="plain file name"):
            model_index.copy(source, bad, tmp_path / "d2")
    assert not (tmp_path / "d2").exists()


def test_copy_keeps_configs_whose_filename_names_no_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_artifact(tmp_path / "real.pt")
    index = model_index.append(
        model_index.create("real.pt", batch_size=1),
        model_index.create("models/mlp-bs2-p1", batch_size=2, compiler="eager"),
        model_index.create("eager:mlp-bs4-p1-0a1b2c3d", batch_size=4),  # as a sweep writes them
    )
    new_path = model_index.copy(index, "new", "dest")
    configs = read(new_path)["model_configs"]
    assert configs[0]["filename"] == "real.pt"
    assert configs[1:] == index["model_configs"][1:]
    assert sorted(os.listdir("dest")) == ["new.json", "real.pt"]


def test_copy_refuses_an_index_whose_artifact_is_missing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_artifact(tmp_path / "real.pt")
    index = model_index.append(
        model_index.create("real.pt", batch_size=1), model_index.create("gone.pt", batch_size=2)
    )
    with pytest.raises(ModelIndexError, match="artifact not found: .*gone.pt"):
        model_index.copy(index, "new", "dest")
    assert not (tmp_path / "dest").exists(), "nothing copied"


def test_copy_never_overwrites_and_copies_nothing_on_a_collision(tmp_path):
    source = make_run(tmp_path / "run")
    dest = tmp_path / "dest"
    write_artifact(dest / "model_b2_p1_bbbb2222.pt", "precious")
    with pytest.raises(ModelIndexError, match="model_b2_p1_bbbb2222.pt: already exists"):
        model_index.copy(source, "copied", dest)
    assert os.listdir(dest) == ["model_b2_p1_bbbb2222.pt"]
    assert (dest / "model_b2_p1_bbbb2222.pt").read_text() == "precious"
    # The index name is protected too, and a second copy into the same folder is refused.
    model_index.copy(source, "first", tmp_path / "again")
    listing = sorted(os.listdir(tmp_path / "again"))
    with pytest.raises(ModelIndexError, match="already exists"):
        model_index.copy(source, "first", tmp_path / "again")
    with pytest.raises(ModelIndexError, match="already exists"):
        model_index.copy(source, "second", tmp_path / "again")
    assert sorted(os.listdir(tmp_path / "again")) == listing


def test_copy_renames_distinct_artifacts_with_the_same_name_and_copies_shared_ones_once(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_artifact(tmp_path / "a" / "model.pt", "from a")
    write_artifact(tmp_path / "b" / "model.pt", "from b")
    index = model_index.append(
        model_index.create("a/model.pt", batch_size=1),
        model_index.create("b/model.pt", batch_size=1),
        model_index.create("./a/model.pt", batch_size=1, input_idx=1),
    )
    new_path = model_index.copy(index, "model.pt.json", "dest")
    assert [c["filename"] for c in read(new_path)["model_configs"]] == ["model.pt", "model-2.pt", "model.pt"]
    assert (tmp_path / "dest" / "model.pt").read_text() == "from a"
    assert (tmp_path / "dest" / "model-2.pt").read_text() == "from b"


def test_copy_refuses_to_copy_a_folder_artifact_into_itself(tmp_path):
    source = make_run(tmp_path / "run")
    inside = tmp_path / "run" / "models" / "model_b4_p2_cccc3333" / "sub"
    with pytest.raises(ModelIndexError, match="into itself"):
        model_index.copy(source, "x", inside)
    assert not inside.exists()


# ------------------------------------------------------------------------------- move


def test_move_copies_then_deletes_the_originals(tmp_path):
    source = make_run(tmp_path / "run")
    old_artifacts = model_index.artifact_paths(source)
    new_path = model_index.move(source, "moved", tmp_path / "dest")
    assert not source.exists()
    assert not any(os.path.lexists(p) for p in old_artifacts)
    assert (tmp_path / "run" / "models").is_dir()  # the folder around the artifacts stays
    assert all(os.path.exists(p) for p in model_index.artifact_paths(new_path))
    assert (tmp_path / "dest" / "model_b4_p2_cccc3333" / "saved_model.pb").read_text() == "graph"


def test_move_refuses_before_copying_when_delete_would_refuse(tmp_path):
    source = make_run(tmp_path / "run")
    index = model_index.load(source)
    index["model_configs"].append({"filename": ".", "batch_size": 8})
    model_index.save(index, source)
    with pytest.raises(DeleteRefused):
        model_index.move(source, "moved", tmp_path / "dest")
    assert not (tmp_path / "dest").exists()
    assert all(os.path.exists(p) for p in model_index.artifact_paths(source)[:3])


# ------------------------------------------------------------------------------- delete


def test_delete_removes_the_index_and_every_artifact(tmp_path):
    source = make_run(tmp_path / "run")
    write_artifact(tmp_path / "run" / "unrelated.txt")
    artifacts = model_index.artifact_paths(source)
    removed = model_index.delete(source)
    assert removed == [*artifacts, str(source)]
    assert sorted(os.listdir(tmp_path / "run")) == ["models", "unrelated.txt"]
    assert os.listdir(tmp_path / "run" / "models") == []


def test_delete_of_an_in_memory_index_resolves_against_the_cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_artifact(tmp_path / "models" / "m.pt")
    assert model_index.delete(model_index.create("models/m.pt")) == [str(tmp_path / "models" / "m.pt")]
    assert not (tmp_path / "models" / "m.pt").exists()


def test_delete_warns_about_missing_artifacts_and_goes_on(tmp_path):
    source = make_run(tmp_path / "run")
    os.remove(tmp_path / "run" / "models" / "model_b2_p1_bbbb2222.pt")
    with pytest.warns(UserWarning, match="1 path.*did not exist.*model_b2_p1_bbbb2222"):
        removed = model_index.delete(source)
    assert len(removed) == 3
    assert not source.exists()


def refused_index(folder: Path, bad_filename: str) -> Path:
    """A run whose last config names ``bad_filename``; the good artifacts must survive a refusal."""
    path = make_run(folder)
    index = model_index.load(path)
    index["model_configs"].append({"filename": bad_filename, "batch_size": 16})
    model_index.save(index, path)
    return path


def assert_nothing_removed(path: Path, extra=()) -> None:
    assert path.exists()
    assert all(os.path.exists(p) for p in model_index.artifact_paths(path)[:3])
    for p in extra:
        assert os.path.exists(p)


@pytest.mark.parametrize(
    "bad_filename, reason",
    [
        ("/", "the filesystem root"),
        ("/../..", "the filesystem root"),
        (".", "the index's own folder"),
        ("models/..", "the index's own folder"),
        ("..", "a folder above the index's folder"),
        ("../..", "a folder above the index's folder"),
    ],
)
def test_delete_refuses_root_the_index_folder_and_above(tmp_path, monkeypatch, bad_filename, reason):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    path = refused_index(tmp_path / "deep" / "run", bad_filename)
    with pytest.raises(DeleteRefused, match=re.escape(reason)) as info:
        model_index.delete(path)
    message = str(info.value)
    assert "nothing was removed" in message and str(path) in message and "model_configs[3]" in message
    assert_nothing_removed(path)


def test_delete_refuses_an_absolute_folder_above_the_index(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    path = refused_index(tmp_path / "deep" / "run", str(tmp_path / "deep"))
    with pytest.raises(DeleteRefused, match="a folder above the index's folder"):
        model_index.delete(path)
    assert_nothing_removed(path)


def test_delete_refuses_the_home_folder_and_folders_above_it(tmp_path, monkeypatch):
    home = tmp_path / "users" / "me"
    home.mkdir(parents=True)
    (home / "notes.txt").write_text("keep")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(tmp_path)
    for i, (bad, reason) in enumerate([(str(home), "the home folder"), (str(tmp_path / "users"), "a folder above the home folder")]):
        path = refused_index(tmp_path / f"elsewhere{i}" / "run", bad)
        with pytest.raises(DeleteRefused, match=reason):
            model_index.delete(path)
        assert_nothing_removed(path, [home / "notes.txt"])
    # "~" is not expanded: it names a folder "~" beside the index (absent here), never the home.
    path = refused_index(tmp_path / "tilde" / "run", "~")
    with pytest.warns(UserWarning, match="did not exist"):
        model_index.delete(path)
    assert (home / "notes.txt").exists()


def test_delete_refuses_a_symlink_that_is_the_home_folder(tmp_path, monkeypatch):
    real_home = tmp_path / "data" / "me"
    real_home.mkdir(parents=True)
    os.symlink(real_home, tmp_path / "home_link")
    monkeypatch.setenv("HOME", str(tmp_path / "home_link"))
    path = refused_index(tmp_path / "run", str(tmp_path / "home_link"))
    with pytest.raises(DeleteRefused, match="the home folder"):
        model_index.delete(path)
    assert os.path.islink(tmp_path / "home_link")


def test_delete_refuses_the_working_directory_and_above(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    work = tmp_path / "work" / "project"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    path = refused_index(tmp_path / "runs" / "a", str(tmp_path / "work"))
    with pytest.raises(DeleteRefused, match="a folder above the working directory"):
        model_index.delete(path)
    with pytest.raises(DeleteRefused, match="the working directory"):
        model_index.delete(model_index.create(str(work)))
    assert_nothing_removed(path)


def test_delete_reports_every_offending_config_at_once(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    path = refused_index(tmp_path / "run", "/")
    index = model_index.load(path)
    index["model_configs"].append({"filename": ".."})
    model_index.save(index, path)
    with pytest.raises(DeleteRefused) as info:
        model_index.delete(path)
    assert "model_configs[3]" in str(info.value) and "model_configs[4]" in str(info.value)
    assert_nothing_removed(path)


def test_delete_unlinks_symlinks_and_never_follows_them(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    precious = tmp_path / "precious"
    write_folder_artifact(precious)
    write_artifact(tmp_path / "precious.pt", "keep me")
    run = tmp_path / "run"
    run.mkdir()
    os.symlink(precious, run / "folder_link")
    os.symlink(tmp_path / "precious.pt", run / "file_link.pt")
    os.symlink(tmp_path, run / "link_to_above")  # a link to a guarded folder is just a link
    os.symlink(tmp_path / "gone", run / "dangling")
    index = model_index.append(*(model_index.create(n) for n in ["folder_link", "file_link.pt", "link_to_above", "dangling"]))
    path = model_index.save(index, run / "idx.json")

    removed = model_index.delete(path)

    assert len(removed) == 5
    assert os.listdir(run) == []
    assert (precious / "variables" / "variables.data").read_text() == "data"
    assert (tmp_path / "precious.pt").read_text() == "keep me"


def test_an_empty_filename_is_rejected_before_anything_is_deleted(tmp_path):
    path = make_run(tmp_path)
    index = read(path)
    index["model_configs"].append({"filename": ""})
    path.write_text(json.dumps(index))
    with pytest.raises(ModelIndexError, match=r"model_configs\[3\]\.filename"):
        model_index.delete(path)
    assert path.exists()
    assert len(list((tmp_path / "models").iterdir())) == 3


def test_delete_of_a_missing_index_is_a_typed_error(tmp_path):
    with pytest.raises(ModelIndexError, match="no such model index file"):
        model_index.delete(tmp_path / "nope.json")


# ------------------------------------------------------------------------------- artifact_path


def test_artifact_path_resolves_against_the_index_folder_or_the_cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = {"filename": "models/m.pt"}
    assert model_index.artifact_path(tmp_path / "run" / "idx.json", config) == str(tmp_path / "run" / "models" / "m.pt")
    assert model_index.artifact_path("run/idx.json", config) == str(tmp_path / "run" / "models" / "m.pt")
    assert model_index.artifact_path(None, config) == str(tmp_path / "models" / "m.pt")
    assert model_index.artifact_path("run/idx.json", {"filename": "/abs/m.pt"}) == "/abs/m.pt"
    with pytest.raises(ModelIndexError, match="no 'filename'"):
        model_index.artifact_path(None, {"batch_size": 1})
