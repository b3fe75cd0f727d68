"""``task: generate`` in a spec: what it plans into, and one located line for each mistake."""

from __future__ import annotations

import textwrap

import pytest

from neuronperf.errors import SpecError
from neuronperf.plan.expand import plan
from neuronperf.spec.load import parse_spec

pytestmark = pytest.mark.pure

PROMPT = "inputs: [{shape: [$prompt_len], dtype: int64, low: 0, high: 100}]"


def spec_text(model: str, compiler: str = "eager", framework: str = "torch", device: str = "cpu") -> str:
    return textwrap.dedent(f"""\
        version: 1
        framework: {framework}
        device_type: {device}
        compiler: {compiler}
        models:
          - name: lm
            factory: "neuronperf.zoo:gpt2"
        """) + textwrap.indent(textwrap.dedent(model), "    ")


def problems(text: str) -> list[str]:
    with pytest.raises(SpecError) as info:
        parse_spec(text, "s.yaml")
    return [str(p) for p in info.value.problems]


def test_prompt_length_new_tokens_and_batch_size_are_an_ordinary_sweep():
    text = spec_text(f"""\
        task: generate
        generate: {{new_tokens: $new_tokens}}
        params: {{prompt_len: [8, 32], new_tokens: [4, 16]}}
        {PROMPT}
        """) + "sweep: {batch_sizes: [1, 2]}\n"
    p = plan(parse_spec(text, "s.yaml"))
    assert len(p.compile_entries) == 8 and len(p.run_entries) == 8
    seen = set()
    for c in p.compile_entries:
        params = dict(c.params)
        assert (c.task, c.new_tokens) == ("generate", params["new_tokens"])
        assert c.inputs[0].shape == (params["prompt_len"],)
        assert c.to_dict()["new_tokens"] == c.new_tokens  # part of the identity
        seen.add((params["prompt_len"], c.new_tokens, c.batch_size))
    assert len(seen) == 8
    assert p.run_entries[0].id == "lm-prompt_len8-new_tokens4-bs1-p1-m1-w1"


def test_a_fixed_new_tokens_is_in_the_identity_not_the_id():
    def entry(n: int):
        return plan(parse_spec(spec_text(f"task: generate\ngenerate: {{new_tokens: {n}}}\nparams: {{prompt_len: 8}}\n{PROMPT}\n"), "s.yaml")).run_entries[0]

    assert entry(4).id == entry(8).id
    assert entry(4).key != entry(8).key


def test_forward_entries_keep_their_keys():
    text = spec_text("inputs: [{shape: [8], dtype: int64, low: 0, high: 100}]\n")
    entry = plan(parse_spec(text, "s.yaml")).compile_entries[0]
    assert (entry.task, entry.new_tokens) == ("forward", None)
    assert "task" not in entry.to_dict() and "new_tokens" not in entry.to_dict()


@pytest.mark.parametrize(("model", "expected"), [
    ("task: generate\ngenerate: {new_tokens: 0}\nparams: {prompt_len: 8}\n" + PROMPT,
     "models[0].generate.new_tokens: 0 is not a positive integer"),
    ("task: generate\ngenerate: {new_tokens: -3}\nparams: {prompt_len: 8}\n" + PROMPT,
     "models[0].generate.new_tokens: -3 is not a positive integer"),
    ("task: generate\ngenerate: {new_tokens: 2.5}\nparams: {prompt_len: 8}\n" + PROMPT,
     "models[0].generate.new_tokens: expected an integer or a string, got 2.5"),
    ("task: generate\ngenerate: {new_tokens: many}\nparams: {prompt_len: 8}\n" + PROMPT,
     "models[0].generate.new_tokens: 'many' is not valid (a positive integer, or '$name' of a model parameter)"),
    ("task: generate\ngenerate: {new_tokens: $n}\nparams: {prompt_len: 8}\n" + PROMPT,
     "models[0].generate.new_tokens: unknown parameter '$n' (this model's params: prompt_len)"),
    ("task: generate\ngenerate: {new_tokens: $n}\nparams: {prompt_len: 8, n: [4, 0]}\n" + PROMPT,
     "models[0].params.n[1]: 0 is not a positive integer, but '$n' is generate.new_tokens"),
    ("task: generate\nparams: {prompt_len: 8}\n" + PROMPT,
     "models[0].task: task: generate needs a generate key: generate: {new_tokens: N}"),
    ("generate: {new_tokens: 4}\nparams: {prompt_len: 8}\n" + PROMPT,
     "models[0].generate: generate applies to 'task: generate' models only; add task: generate or remove it"),
    ("task: generate\ngenerate: {new_tokens: 4}\ninputs: [{shape: [8], dtype: int64, low: 0, high: 100}, {shape: [8], dtype: int64, low: 1, high: 2}]",
     "models[0].inputs: a 'task: generate' model takes one input, the prompt's token ids"),
    ("task: generate\ngenerate: {new_tokens: 4}\ninputs: [{shape: [8]}]",
     "models[0].inputs[0]: the prompt's token ids are integers: give the input dtype: int64 (got float32)"),
    ("task: generate\ngenerate: {new_tokens: 4}\ninputs: [{shape: [8, 2], dtype: int64, low: 0, high: 100}]",
     "models[0].inputs[0]: the prompt's token ids have one dimension without the batch, [$prompt_len]; got 2"),
    ("task: generate\ngenerate: {new_tokens: 4}\ninputs: [{shape: [8], dtype: int64}]",
     "models[0].inputs[0]: give the prompt's token ids a range, low: 0 and high: the vocabulary size"),
    ("task: generation\ngenerate: {new_tokens: 4}\nparams: {prompt_len: 8}\n" + PROMPT,
     "models[0].task: 'generation' is not one of: forward, generate; did you mean 'generate'?"),
    ("task: generate\ngenerate: {new_tokens: 4, max_tokens: 8}\nparams: {prompt_len: 8}\n" + PROMPT,
     "models[0].generate.max_tokens: unknown key 'max_tokens'"),
    ("task: generate\ngenerate: {new_tokens: 4}\nparams: {prompt_len: 8}\n" + PROMPT
     + "\nevaluate: {dataset: 'pkg.mod:data', metrics: accuracy}",
     "models[0].evaluate: evaluate measures the accuracy of forward models; a 'task: generate' model takes none"),
])
def test_each_mistake_is_one_located_line(model, expected):
    found = problems(spec_text(model))
    assert len(found) == 1, found
    assert found[0].startswith("s.yaml:") and expected in found[0], found


def test_generate_on_a_compiler_that_cannot_generate_names_the_one_that_can():
    model = "task: generate\ngenerate: {new_tokens: 4}\nparams: {prompt_len: 8}\n" + PROMPT
    (found,) = problems(spec_text(model, compiler="torchscript"))
    assert found.startswith("s.yaml:8:11: models[0].task: task: generate does not run on torch/cpu/torchscript")
    assert "use compiler: eager" in found
    (found,) = problems(spec_text(model, framework="onnxruntime", compiler="onnx"))
    assert "task: generate does not run on onnxruntime/cpu/onnx" in found
