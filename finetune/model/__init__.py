"""Models: our core transformer, loading any Hugging Face causal LM, the tokenizer.

Importing this package registers the core transformer ("ft_core") with transformers'
Auto classes, so ``AutoModelForCausalLM.from_pretrained(folder)`` loads a model ft
pretrained. It imports torch; ``import finetune`` alone does not.
"""

from finetune.model import core as _core  # noqa: F401  (registers "ft_core" with the Auto classes)
