"""What both backends read off the tokenizer alone: which tokens end the response, and which end a clause.

A served backend has no model object in this process, only the tokenizer (and the server's generation config, which
its own EOS handling follows), so these rules live here rather than inside the transformers backend.
"""

from __future__ import annotations

from typing import Any

from ..config import CLAUSE_END_CHARS

#: End-of-text and end-of-turn markers of the common chat templates.
END_OF_TURN_TOKENS = ("<|endoftext|>", "<|im_end|>", "<|eot_id|>", "<|end|>", "</s>", "<end_of_turn>", "<|eos|>")


def end_of_response_ids(tokenizer: Any, generation_eos: Any = None) -> set[int]:
    """Token ids that end a response: the tokenizer's EOS, the generation config's (``generation_eos``: an id or a
    list of ids) and every end-of-turn marker the vocabulary has."""
    ids: set[int] = set()
    for source in (tokenizer.eos_token_id, generation_eos):
        if isinstance(source, int):
            ids.add(source)
        elif isinstance(source, (list, tuple)):
            ids.update(int(x) for x in source)
    vocab = tokenizer.get_vocab()
    ids.update(vocab[t] for t in END_OF_TURN_TOKENS if t in vocab)
    return ids


def clause_end_ids(tokenizer: Any, size: int | None = None) -> list[int]:
    """Ids of the tokens whose text ends a clause (``, . ? : ;`` or a newline), among the first ``size`` ids."""
    texts = tokenizer.batch_decode([[i] for i in range(len(tokenizer))])
    return [i for i, text in enumerate(texts[:size]) if text and text[-1] in CLAUSE_END_CHARS]
