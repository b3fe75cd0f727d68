"""Every code snippet of the NeuronPerf model index guide, run as written.

The snippet lines inside each test are the guide's, verbatim; the lines around them make the
files they expect (small real files stand in for compiled models) and check what they did. Each
test runs in its own temporary working directory.

Not here: the guide's ``neuronperf.torch.benchmark('model_index.json', inputs, batch_sizes=2)``
snippet benchmarks on a Neuron device by default; it belongs to the torch facade's tests.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

import neuronperf

pytestmark = pytest.mark.pure

# The guide's example index, character for character.
GUIDE_INDEX = """
   {
       "version": "0.0.0.0+0bc220a",
       "model_configs": [
           {
               "filename": "models/model_b1_p1_38793jda.pt",
               "input_idx": 0,
               "batch_size": 1,
               "pipeline_size": 1,
               "compile_s": 5.32
           }
       ]
   }
"""


@pytest.fixture(autouse=True)
def in_tmp_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def stand_in_model(path: str, text: str = "compiled model") -> str:
    """A real file where a compiled artifact would be."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w") as f:
        f.write(text)
    return path


def guide_index_with_its_model() -> None:
    with open("model_index.json", "w") as f:
        f.write(GUIDE_INDEX)
    stand_in_model("models/model_b1_p1_38793jda.pt")


def test_the_example_index_loads_and_json_tool_prints_it():
    guide_index_with_its_model()
    index = neuronperf.model_index.load("model_index.json")
    assert index["model_configs"][0] == {
        "filename": "models/model_b1_p1_38793jda.pt",
        "input_idx": 0,
        "batch_size": 1,
        "pipeline_size": 1,
        "compile_s": 5.32,
    }
    # python3 -m json.tool model_index.json
    shown = subprocess.run(
        [sys.executable, "-m", "json.tool", "model_index.json"], capture_output=True, text=True, check=True
    )
    assert json.loads(shown.stdout) == index

    # An index we write reads back the same way.
    saved = neuronperf.model_index.save(index, "ours.json")
    shown = subprocess.run([sys.executable, "-m", "json.tool", saved], capture_output=True, text=True, check=True)
    assert json.loads(shown.stdout) == index


def test_the_example_index_and_its_artifacts_can_be_destroyed():
    guide_index_with_its_model()

    neuronperf.model_index.delete("model_index.json")

    assert not os.path.exists("model_index.json")
    assert not os.path.exists("models/model_b1_p1_38793jda.pt")


def test_creating():
    index = neuronperf.model_index.create('/path/to/model', batch_size=1)
    filename = neuronperf.model_index.save(index)

    assert re.fullmatch(r"model_[a-z0-9]{8}\.json", filename)
    assert neuronperf.model_index.load(filename) == index
    assert index["model_configs"][0]["filename"] == "/path/to/model"


def test_creating_with_a_custom_filename():
    index = neuronperf.model_index.create('/path/to/model', batch_size=1)
    neuronperf.model_index.save(index, 'my_index.json')

    assert neuronperf.model_index.load("my_index.json") == index


def test_appending():
    pipeline_sizes = [1, 2, 3, 4]
    indexes = [neuronperf.model_index.create(f'/path/to/model_p{p}', pipeline_size=p, batch_size=5) for p in pipeline_sizes]
    index = neuronperf.model_index.append(*indexes)
    neuronperf.model_index.save(index, 'my_index.json')

    configs = neuronperf.model_index.load("my_index.json")["model_configs"]
    assert [(c["filename"], c["pipeline_size"], c["batch_size"]) for c in configs] == [
        (f"/path/to/model_p{p}", p, 5) for p in pipeline_sizes
    ]


def test_filtering():
    index = neuronperf.model_index.append(
        *(neuronperf.model_index.create(f"models/model_b{b}.pt", input_idx=i, batch_size=b) for i, b in enumerate([1, 2, 3]))
    )

    new_index = neuronperf.model_index.filter(index, batch_sizes=[1, 2])

    assert [c["batch_size"] for c in new_index["model_configs"]] == [1, 2]
    assert [c["input_idx"] for c in new_index["model_configs"]] == [0, 1]  # inputs keep their positions
    assert len(index["model_configs"]) == 3


def test_filtering_an_index_given_by_its_path():
    index = "model_index.json"
    for b in [1, 2, 3]:
        stand_in_model(f"models/model_b{b}_p1.pt")
    neuronperf.model_index.save(
        neuronperf.model_index.append(
            *(neuronperf.model_index.create(f"models/model_b{b}_p1.pt", input_idx=i, batch_size=b) for i, b in enumerate([1, 2, 3]))
        ),
        index,
    )

    new_index = neuronperf.model_index.filter(index, batch_sizes=[1, 2])

    assert [os.path.basename(p) for p in neuronperf.model_index.artifact_paths(new_index)] == [
        "model_b1_p1.pt",
        "model_b2_p1.pt",
    ]
    assert all(os.path.exists(p) for p in neuronperf.model_index.artifact_paths(new_index))


def test_copying_a_filtered_index():
    for b in [1, 2, 3]:
        stand_in_model(f"models/model_b{b}_p1.pt", f"batch {b}")
    neuronperf.model_index.save(
        neuronperf.model_index.append(
            *(neuronperf.model_index.create(f"models/model_b{b}_p1.pt", input_idx=i, batch_size=b) for i, b in enumerate([1, 2, 3]))
        ),
        "model_index.json",
    )
    index = neuronperf.model_index.filter("model_index.json", batch_sizes=[2, 3])
    new_index_name, new_index_dir = "small_batches.json", "shipped"

    path = neuronperf.model_index.copy(index, new_index_name, new_index_dir)

    assert path == os.path.join("shipped", "small_batches.json")
    copied = neuronperf.model_index.load(path)["model_configs"]
    assert [c["filename"] for c in copied] == ["model_b2_p1.pt", "model_b3_p1.pt"]
    with open(os.path.join("shipped", "model_b3_p1.pt")) as f:
        assert f.read() == "batch 3"


def test_deleting():
    stand_in_model("models/model_b5_p1.pt")
    os.makedirs("models/model_b5_p2_saved")  # a folder artifact
    stand_in_model("models/model_b5_p2_saved/saved_model.pb")
    index = neuronperf.model_index.append(
        neuronperf.model_index.create("models/model_b5_p1.pt", batch_size=5),
        neuronperf.model_index.create("models/model_b5_p2_saved", batch_size=5, pipeline_size=2),
    )
    neuronperf.model_index.save(index, "my_index.json")

    neuronperf.model_index.delete('my_index.json')

    assert sorted(os.listdir(".")) == ["models"]
    assert os.listdir("models") == []
