"""Whether a `transformers` model is a causal language model, as `transformers` itself says."""

from __future__ import annotations

from torch import nn


def is_causal_lm_model(model: nn.Module) -> bool:
    """True when the model's class, or a class it derives from, is one `transformers` registers
    for `AutoModelForCausalLM` (`MODEL_FOR_CAUSAL_LM_MAPPING_NAMES`): its forward maps token ids
    to next-token logits. That covers `LlamaForCausalLM`, `GPT2LMHeadModel`, `OpenAIGPTLMHeadModel`
    and the rest whatever their names; it leaves out base models (`GPT2Model`), masked LMs,
    classifiers and encoder-decoders (which can generate, but from an encoder's input)."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    causal = set(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.values())
    return any(
        cls.__name__ in causal and cls.__module__.startswith("transformers.")
        for cls in type(model).__mro__
    )
