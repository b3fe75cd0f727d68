"""The generation task's contract, and its adapter for causal language models with a
``transformers``-style ``generate``.

For ``task: generate`` a backend's ``load`` returns a callable ``model(input_ids, on_token=None)``
that runs one request: it generates exactly ``new_tokens`` tokens after each prompt of the batch
and, when ``on_token`` is given, calls it once per decoding step, as soon as that step's tokens
are on the host (never for the prompt). The worker times the call and its ``on_token`` clock
records when each token existed (``neuronperf.measure.worker.TokenClock``); ``neuronperf.stats`` turns
those stamps into TTFT, TPOT and inter-token latency.

``CausalLMGenerate`` adapts anything whose ``generate`` takes ``transformers``' arguments
(``max_new_tokens``, ``min_new_tokens``, and ``streamer`` or ``stopping_criteria``):
transformers' own models on CPU and CUDA, and optimum-neuron's ``NeuronModelForCausalLM``.
Generation is forced to exactly ``new_tokens`` (``min_new_tokens = max_new_tokens``: an
end-of-sequence token cannot end a request early) and greedy, so every request does the same
work.

Each step is reported through one of two hooks of ``generate``:

- ``streamer`` (transformers' models): a streamer's ``put`` is where transformers hands over each
  step's tokens, already copied to the host (``.cpu()``, which waits for a GPU), so its time is
  when the token existed; its first ``put`` is the prompt and is not a token.
- ``stopping_criteria`` (optimum-neuron, whose streamlined ``generate`` documents
  ``stopping_criteria`` but not ``streamer``, and drops a streamer it is given): the criteria are
  asked once per step, just after that step's token was appended to the sequence, never for the
  prompt. A Neuron model's outputs are host tensors, so that is when the token exists on the host.

torch and transformers are imported only inside functions.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Optional

from neuronperf.entries import CompileEntry

#: Names under which model configs give their context length (positions), in the order tried.
CONTEXT_ATTRIBUTES = ("n_positions", "max_position_embeddings", "n_ctx", "max_sequence_length", "seq_length")


class StepStreamer:
    """A ``transformers`` streamer (``put``/``end``) that calls ``on_token`` for every decoding
    step's tokens and ignores the prompt, which ``generate`` puts first."""

    __slots__ = ("on_token", "prompt_seen")

    def __init__(self, on_token: Callable[[], None]):
        self.on_token = on_token
        self.prompt_seen = False

    def put(self, value: Any) -> None:
        if self.prompt_seen:
            self.on_token()
        else:
            self.prompt_seen = True

    def end(self) -> None:
        """Nothing to flush: the stamps are taken in ``put``."""


def step_stopping_criteria(on_token: Callable[[], None]) -> Any:
    """A ``transformers.StoppingCriteriaList`` whose one criterion calls ``on_token`` each time
    ``generate`` asks it (once per decoding step) and never stops the generation."""
    from transformers import StoppingCriteriaList

    return StoppingCriteriaList([_step_criterion_class()(on_token)])


@functools.cache
def _step_criterion_class() -> type:
    # Made once per process: transformers is imported only here, and a class statement on every
    # request would add its cost to the timed call.
    import torch
    from transformers import StoppingCriteria

    class StepCriterion(StoppingCriteria):  # type: ignore[misc]
        """Calls ``on_token``; answers "not done" for every sequence of the batch."""

        def __init__(self, on_token: Callable[[], None]):
            self.on_token = on_token

        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            self.on_token()
            return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)

    return StepCriterion


#: How ``CausalLMGenerate`` hears of each decoding step (see the module docstring).
TOKEN_HOOKS = ("streamer", "stopping_criteria")


class CausalLMGenerate:
    """``model(input_ids, on_token=None)`` for a causal LM with a transformers-style ``generate``:
    exactly ``new_tokens`` greedy tokens per prompt, the KV cache on (``use_cache``). Each step
    reaches ``on_token`` through ``generate``'s ``streamer`` or its ``stopping_criteria``
    (``token_hook``)."""

    def __init__(self, model: Any, new_tokens: int, device: Any = None, token_hook: str = "streamer"):
        if token_hook not in TOKEN_HOOKS:
            raise ValueError(f"token_hook must be one of {', '.join(TOKEN_HOOKS)}, not {token_hook!r}")
        self.model = model
        self.new_tokens = new_tokens
        self.device = device
        self.token_hook = token_hook
        config = getattr(model, "config", None)
        pad = getattr(config, "pad_token_id", None)
        eos = getattr(config, "eos_token_id", None)
        if pad is None:
            pad = eos[0] if isinstance(eos, (list, tuple)) and eos else eos
        # An explicit pad id keeps generate from warning about it on every request.
        self.options: dict[str, Any] = {
            "max_new_tokens": new_tokens,
            "min_new_tokens": new_tokens,
            "do_sample": False,
            "num_beams": 1,
            "use_cache": True,
            "pad_token_id": 0 if pad is None else pad,
        }

    def __call__(self, input_ids: Any, on_token: Optional[Callable[[], None]] = None) -> Any:
        if self.device is not None and getattr(input_ids, "device", None) != self.device:
            input_ids = input_ids.to(self.device)
        import torch

        mask = torch.ones_like(input_ids)
        if self.token_hook == "stopping_criteria":
            # Without a clock (a plain call), generate runs with its own criteria alone.
            hook = {"stopping_criteria": step_stopping_criteria(on_token)} if on_token is not None else {}
        else:
            hook = {"streamer": StepStreamer(on_token) if on_token is not None else None}
        return self.model.generate(input_ids, attention_mask=mask, **hook, **self.options)


def context_length(model: Any) -> Optional[int]:
    """The most positions (prompt + generated tokens) the model's config allows, if it says."""
    config = getattr(model, "config", None)
    for name in CONTEXT_ATTRIBUTES:
        value = getattr(config, name, None)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def generation_problem(model: Any, entry: CompileEntry) -> Optional[str]:
    """Why ``model`` cannot run ``entry``'s requests (it cannot generate, or prompt plus new
    tokens exceed its context), or None. The compile stage records it as the entry's error."""
    factory = entry.model.factory
    generate = getattr(model, "generate", None)
    can_generate = getattr(model, "can_generate", None)
    if not callable(generate) or (callable(can_generate) and not can_generate()):
        return (f"task: generate needs a causal language model with a generate() method (a transformers "
                f"...ForCausalLM); factory {factory!r} returned {type(model).__name__}, which cannot generate")
    prompt_len = prompt_length(entry)
    limit = context_length(model)
    total = prompt_len + int(entry.new_tokens or 0)
    if limit is not None and total > limit:
        return (f"prompt of {prompt_len} tokens + new_tokens {entry.new_tokens} = {total} positions, more "
                f"than the model's context of {limit} (its config); use a shorter prompt or fewer new tokens")
    vocab = getattr(getattr(model, "config", None), "vocab_size", None)
    high = entry.inputs[0].high if entry.inputs else None
    if isinstance(vocab, int) and high is not None and high > vocab:
        return (f"the prompt's token ids go up to {int(high) - 1} (inputs high: {int(high)}), but the model's "
                f"vocabulary has {vocab} tokens; give the input high: {vocab} at most")
    return None


def prompt_length(entry: CompileEntry) -> int:
    """The prompt's length in tokens: the one input's one dimension (the spec checks the shape)."""
    shape = entry.inputs[0].shape if entry.inputs else ()
    return int(shape[-1]) if shape else 1


__all__ = [
    "TOKEN_HOOKS", "CausalLMGenerate", "StepStreamer", "context_length", "generation_problem", "prompt_length",
    "step_stopping_criteria",
]
