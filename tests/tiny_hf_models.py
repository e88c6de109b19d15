"""Tiny random-weight Hugging Face causal LMs of several families, built offline (no hub access).

For tests that load models of several families through the project and compare the results with
Hugging Face's own log-probs. `build(family, folder)` writes what `save_pretrained` writes
(config.json, model.safetensors in float32) plus a `tokenizers` byte-level BPE of exactly `vocab`
tokens, wrapped in `PreTrainedTokenizerFast` and saved in the same folder, so that
`AutoModelForCausalLM` / `AutoTokenizer.from_pretrained(folder, local_files_only=True)` load it.

Each family keeps its real special tokens, their ids matching the config's bos/eos/pad ids: Llama
and Gemma 2 prepend BOS when encoding, GPT-2, GPT-NeoX and Qwen2 do not. Weights are seeded, and
every parameter is moved off its init by `NOISE` (norm gains and biases too) so log-probs are far
from uniform and norm folding has something to fold. Build into folders whose names do not contain
"llama" or "gemma": TransformerLens picks its config by name when they do.
"""

from pathlib import Path

import torch
import transformers
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

FAMILIES = ("gpt2", "gpt_neox", "llama", "gemma2", "qwen2")
NOISE = 0.15
TEXT = """\
The quick brown fox jumps over the lazy dog.
Pack my box with five dozen liquor jugs!
Beautiful is better than ugly; explicit is better than implicit.
Simple is better than complex, and complex is better than complicated.
Readability counts: it's 2024, and 1 + 2 = 3 (mostly).
When in doubt, refuse the temptation to guess.
Sparse autoencoders find features in the residual stream of a model.
Attention heads move information between token positions.
Now is better than never, although never is often better than right now.
If the implementation is hard to explain, it's a bad idea.
""".splitlines()


def _tokenizer(vocab: int, specials: list[str], bos: str | None, eos: str, pad: str | None, unk: str,
               add_bos: bool) -> transformers.PreTrainedTokenizerFast:
    """Byte-level BPE trained on TEXT, `specials` first (ids 0, 1, ...), `vocab` tokens in all."""
    tok = Tokenizer(models.BPE(unk_token=unk))  # the alphabet is TEXT's characters, not all 256 bytes
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(TEXT, trainers.BpeTrainer(vocab_size=vocab, special_tokens=specials,
                                                      limit_alphabet=vocab - len(specials), show_progress=False))
    assert tok.get_vocab_size() == vocab, (tok.get_vocab_size(), vocab)
    tok.post_processor = (processors.TemplateProcessing(single=f"{bos} $A", pair=f"{bos} $A {bos} $B",
                                                        special_tokens=[(bos, tok.token_to_id(bos))])
                          if add_bos else processors.ByteLevel(trim_offsets=False))
    # The post-processor is what prepends BOS: transformers 5 does not save `add_bos_token` next to a tokenizer.json.
    return transformers.PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=bos, eos_token=eos,
                                                pad_token=pad, unk_token=unk)


def _gpt2(vocab):
    tok = _tokenizer(vocab, ["<|endoftext|>"], "<|endoftext|>", "<|endoftext|>", None, "<|endoftext|>", False)
    cfg = transformers.GPT2Config(vocab_size=vocab, n_positions=64, n_ctx=64, n_embd=32, n_layer=2, n_head=4,
                                  bos_token_id=0, eos_token_id=0)  # n_inner None: 4 * n_embd = 128
    return tok, transformers.GPT2LMHeadModel(cfg)


def _gpt_neox(vocab):  # Pythia-like
    tok = _tokenizer(vocab, ["<|endoftext|>", "<|padding|>"], "<|endoftext|>", "<|endoftext|>", "<|padding|>",
                     "<|endoftext|>", False)
    cfg = transformers.GPTNeoXConfig(vocab_size=vocab, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                     intermediate_size=128, max_position_embeddings=64, use_parallel_residual=True,
                                     rope_parameters={"rope_type": "default", "rope_theta": 10000.0,
                                                      "partial_rotary_factor": 0.25},
                                     tie_word_embeddings=False, bos_token_id=0, eos_token_id=0, pad_token_id=1)
    return tok, transformers.GPTNeoXForCausalLM(cfg)


def _llama(vocab):
    tok = _tokenizer(vocab, ["<unk>", "<s>", "</s>"], "<s>", "</s>", None, "<unk>", True)
    cfg = transformers.LlamaConfig(vocab_size=vocab, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                   num_key_value_heads=2, head_dim=8, intermediate_size=64,
                                   max_position_embeddings=64, rms_norm_eps=1e-5, tie_word_embeddings=False,
                                   bos_token_id=1, eos_token_id=2)
    return tok, transformers.LlamaForCausalLM(cfg)


# softcaps far below Gemma 2's 50 / 30 so that dropping either moves log-probs by > 0.1; queries scaled by
# 1/sqrt(36), not 1/sqrt(head_dim), as Gemma 2 27B's differ (query_pre_attn_scalar 144, head_dim 128)
def _gemma2(vocab):
    tok = _tokenizer(vocab, ["<pad>", "<eos>", "<bos>", "<unk>"], "<bos>", "<eos>", "<pad>", "<unk>", True)
    cfg = transformers.Gemma2Config(vocab_size=vocab, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                    num_key_value_heads=2, head_dim=16, query_pre_attn_scalar=36,
                                    intermediate_size=64, max_position_embeddings=64, sliding_window=8,
                                    attn_logit_softcapping=5.0, final_logit_softcapping=5.0,
                                    pad_token_id=0, eos_token_id=1, bos_token_id=2)
    return tok, transformers.Gemma2ForCausalLM(cfg)


def _qwen2(vocab):  # like Qwen2.5-0.5B: no BOS token, <|endoftext|> is eos and pad, tied embeddings
    tok = _tokenizer(vocab, ["<|endoftext|>"], None, "<|endoftext|>", "<|endoftext|>", "<|endoftext|>", False)
    cfg = transformers.Qwen2Config(vocab_size=vocab, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                   num_key_value_heads=2, intermediate_size=64, max_position_embeddings=64,
                                   rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
                                   tie_word_embeddings=True, bos_token_id=0, eos_token_id=0)
    return tok, transformers.Qwen2ForCausalLM(cfg)


def build(family: str, folder: Path, *, vocab: int = 96, seed: int = 0) -> Path:
    """Write a tiny random model of `family` (config.json, model.safetensors, tokenizer files) into folder."""
    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; expected one of {FAMILIES}")
    torch.manual_seed(seed)
    tok, model = globals()[f"_{family}"](vocab)
    model = model.float().eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(NOISE * torch.randn_like(p))
    folder = Path(folder)
    model.save_pretrained(folder, safe_serialization=True)
    tok.save_pretrained(folder)
    return folder
