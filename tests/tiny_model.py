"""A tiny randomly initialised Llama with a byte-level BPE tokenizer trained in memory: no download, builds in ~1 s.

Fast tests run the real engine on it; the weights are random, so tests assert properties of the search (caching,
determinism, rewinding, stops), never what a good model would say.
"""

from __future__ import annotations

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from rain_core.models import LoadedModel

CORPUS = [
    "The movie was great, and the cast was wonderful. I loved it!",
    "The movie was bad; the plot was dull and slow. I hated it.",
    "Human: How are you today?\nAssistant: I am fine, thank you. How can I help?",
    "A good day starts with coffee: hot, black, and strong.",
    "Question: Is this review positive or negative?\n(A) positive\n(B) negative\nThe answer is: (A)",
    "Rain falls on the quiet town. People walk home, tired and happy.",
] * 4

CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def build_tokenizer(chat: bool = True, extra_corpus: tuple[str, ...] = ()) -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=420, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(CORPUS + list(extra_corpus) * 4, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    if chat:
        fast.chat_template = CHAT_TEMPLATE
    return fast


def build_tiny_model(seed: int = 0, chat: bool = True, context: int = 1024,
                     extra_corpus: tuple[str, ...] = ()) -> LoadedModel:
    """``extra_corpus``: more text for the tokenizer to learn words from (e.g. judge labels that must differ in
    their first token)."""
    tokenizer = build_tokenizer(chat, extra_corpus)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=context,
                         initializer_range=0.2, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=False)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config).eval()
    return LoadedModel(model=model, tokenizer=tokenizer, name=f"tiny-llama-{seed}")
