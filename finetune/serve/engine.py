"""The served model: its prompts rendered as training rendered them, and one batch of jobs decoded at a time."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from finetune.serve.batcher import Done, Job


class PromptError(ValueError):
    """A request's prompt cannot be served (too long, empty, badly shaped); the server answers 400."""

    def __init__(self, message: str, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.param = param
        self.code = code


@dataclass
class Engine:
    model: Any
    tokenizer: Any
    template: Any  # finetune.data.format.Template: how ft generate renders a prompt for this model
    name: str
    context: int | None
    threads: int = 0  # torch threads for decoding; 0: torch's default (a shared machine decodes faster with fewer)

    # ------------------------------------------------------------ prompts
    def completion_ids(self, prompt: str | list[int]) -> list[int]:
        """A completion prompt is the model's input as given (text as the tokenizer reads it, or token ids)."""
        from finetune.data.format import encode_text

        ids = list(prompt) if isinstance(prompt, list) else encode_text(self.tokenizer, prompt)
        if not ids and self.tokenizer.bos_token_id is not None:
            ids = [self.tokenizer.bos_token_id]  # an empty prompt starts a document, as OpenAI's does
        if not ids:
            raise PromptError("prompt is empty and the tokenizer has no BOS token to start from", "prompt")
        if any(not 0 <= i < len(self.tokenizer) for i in ids):
            raise PromptError(f"prompt holds token ids outside the vocabulary (0..{len(self.tokenizer) - 1})", "prompt")
        return ids

    def chat_ids(self, messages: list[dict[str, str]]) -> list[int]:
        """A conversation rendered with the model's training template (see ``chat_prompt``)."""
        from finetune.data.format import encode_text

        return encode_text(self.tokenizer, chat_prompt(self.template, messages))

    def room(self, ids: list[int], max_tokens: int | None, default: int, param: str) -> int:
        """The row's max_tokens: as asked when prompt and answer fit the context, else a 400 (never a cut prompt)."""
        if self.context is None:
            return max_tokens or default
        if max_tokens is None:
            max_tokens = min(default, self.context - len(ids))
        if len(ids) + max_tokens > self.context:
            raise PromptError(
                f"This model's maximum context length is {self.context} tokens. However, you requested "
                f"{len(ids) + max_tokens} tokens ({len(ids)} in the prompt, {max_tokens} for the completion). "
                "Please shorten the prompt or lower max_tokens.",
                param,
                "context_length_exceeded",
            )
        return max_tokens

    # ------------------------------------------------------------ decoding
    def run(self, jobs: list[Job]) -> None:
        """Decode ``jobs`` as one batch (called in the batcher's worker thread); every job gets its ``Done``."""
        import torch
        from transformers import LogitsProcessorList, StoppingCriteriaList

        from finetune.eval.generate import generate_batch, stop_ids
        from finetune.serve.rows import RowSampling, RowTracker

        if self.threads and torch.get_num_threads() != self.threads:
            torch.set_num_threads(self.threads)  # here: the setting belongs to the thread that decodes
        specs = [job.spec for job in jobs]
        tracker = RowTracker(
            specs,
            self.tokenizer,
            on_delta=lambda i, text: jobs[i].send(text),
            cancelled=lambda i: jobs[i].cancelled,
            stops=stop_ids(self.model, self.tokenizer),
        )
        kwargs: dict[str, Any] = {}
        if any(s.temperature > 0 for s in specs):  # sampled rows draw their own tokens; greedy ones stay greedy
            kwargs["logits_processor"] = LogitsProcessorList([RowSampling(specs)])
        generate_batch(
            self.model,
            self.tokenizer,
            [job.ids for job in jobs],
            max(s.max_tokens for s in specs),
            do_sample=False,
            stopping_criteria=StoppingCriteriaList([tracker]),
            **kwargs,
        )
        for job, result in zip(jobs, tracker.results()):
            job.send(Done(result.text, result.finish_reason, len(job.ids), result.completion_tokens))


def chat_prompt(template: Any, messages: list[dict[str, str]]) -> Any:
    """The prompt for a conversation, in the layout the model was trained on.

    An instruction-trained model (ft's default) saw one input per prompt: a conversation of one user
    message (after an optional system message) renders exactly as ``ft generate`` renders that text,
    the system message standing in for the recipe's. Longer conversations, and chat-trained models,
    render as chat: the tokenizer's chat template, or ft's own ``### User:`` layout without one.
    """
    system = [m["content"] for m in messages if m["role"] == "system"]
    turns = [m for m in messages if m["role"] != "system"]
    if not turns or turns[-1]["role"] != "user":
        raise PromptError("messages must end with a user message", "messages")
    if template.shape == "instruction" and len(turns) == 1:
        if system:
            template = replace(template, system="\n\n".join(system))
        return template.prompt({"input": turns[0]["content"]})
    if template.shape != "chat":
        template = replace(template, shape="chat")
    head = [{"role": "system", "content": "\n\n".join(system)}] if system else []
    return template.prompt({"messages": head + turns + [{"role": "assistant", "content": ""}]})


def load_engine(model_dir: Path, name: str, source: str | None = None, threads: int = 0) -> Engine:
    """The model, tokenizer and prompt template of a model, adapter or run's model folder, as ft generate loads them."""
    from finetune.data.format import Template
    from finetune.eval.generate import model_context
    from finetune.methods import load_for_eval

    model, tokenizer, saved = load_for_eval(model_dir)
    template = Template.for_generation(tokenizer, saved, source)  # as ft generate renders prompts
    return Engine(model.eval(), tokenizer, template, name, model_context(model), threads)
