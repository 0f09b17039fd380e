"""Tokenizers and the Falcon-H1R chat format.

Tiny profile: a byte-level BPE trained here in well under a second, with digits split one per token (so
arithmetic is learnable by a 0.5M-parameter model, see reference tiny_feasibility.md) and lossless round
trips for any text. Full profile: the released Falcon-H1R tokenizer, given our chat template when the Hub
copy has none.

The chat template follows Falcon-H1R's as described in [P] §2.1, §3.4 and two third-party copies of the
Hub template (ChatML, default system prompt, reasoning kept only in the final answer; the Hub file itself
was not read) and adds `{% generation %}` markers so TRL's `assistant_only_loss` can mask it.
Design decisions:
- `<think>` / `</think>` are added tokens but *not* special, so `decode(..., skip_special_tokens=True)`
  keeps them and format rewards can still see them (as in the Qwen3 / DeepSeek-R1 tokenizers).
- The assistant mask covers the assistant content **and its closing `<|im_end|>`** (the model must learn
  to stop: `<|im_end|>` is the eos), not the `<|im_start|>assistant\\n` header nor the newline after.
- Only the last assistant turn carries the generation markers ("supervise only the last turn", [P] §2.1);
  only assistant turns after the last user message keep their reasoning, so a training conversation
  keeps it in its final turn and a prompt for a new turn keeps it nowhere. TRL's stop-token probe
  ([user, assistant, user]) therefore sees `<|im_end|>` masked and raises no warning.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterable
from pathlib import Path

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import AutoTokenizer, PreTrainedTokenizerFast

# [P] §3.4, used for RL and evaluation (and in the Falcon-H1R chat template when no system turn is given).
FALCON_SYSTEM_PROMPT = (
    "You are Falcon, a helpful AI assistant created by Technology Innovation Institute (TII). "
    "To answer the user's question, you first think about the reasoning process and then provide the "
    "user with the answer. The reasoning process is enclosed within <think> </think> tags, i.e., "
    "<think> reasoning process here </think> answer here."
)

# The tiny profile's scaled counterpart of FALCON_SYSTEM_PROMPT (118 tiny tokens): the same instruction in a
# few tokens, so tiny SFT / RL / evaluation sequences are not dominated by a constant prefix. Every stage passes
# it explicitly as the system turn; the full profile passes FALCON_SYSTEM_PROMPT.
TINY_SYSTEM_PROMPT = "Think inside <think> </think>, then answer."

PAD_TOKEN = "<|pad|>"


def system_turn(system_prompt: str | None) -> str:
    """The system turn a stage's ``system_prompt`` parameter stands for: the text itself, or
    ``FALCON_SYSTEM_PROMPT`` ([P] §3.4) for ``None`` (the full profile's setting in notebooks 03, 04 and 06)."""
    return FALCON_SYSTEM_PROMPT if system_prompt is None else system_prompt
ENDOFTEXT_TOKEN = "<|endoftext|>"  # document separator for tiny-base pretraining; also the bos token
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"  # end of a ChatML turn = eos
THINK_START = "<think>"
THINK_END = "</think>"
SPECIAL_TOKENS = (PAD_TOKEN, ENDOFTEXT_TOKEN, IM_START, IM_END)  # ids 0..3, skipped by skip_special_tokens
REASONING_TOKENS = (THINK_START, THINK_END)  # single tokens, kept by skip_special_tokens
_SPECIAL_RE = re.compile("|".join(re.escape(t) for t in SPECIAL_TOKENS + REASONING_TOKENS))
BYTE_ALPHABET_SIZE = 256  # byte-level BPE starts from all 256 bytes, so nothing is ever unknown

# ChatML like Falcon-H1R's. `reasoning_content` (vLLM / Qwen3 field) or inline `<think>...</think>` both
# work; a kept turn with inline reasoning is rendered verbatim. Every literal sits in an expression so
# the whitespace control (`-`) never eats a newline that belongs to the format.
CHAT_TEMPLATE = (
    "{%- set ns = namespace(last_user=-1, last_assistant=-1) -%}\n"
    "{%- for m in messages -%}\n"
    "{%- if m['role'] == 'user' -%}{%- set ns.last_user = loop.index0 -%}{%- endif -%}\n"
    "{%- if m['role'] == 'assistant' -%}{%- set ns.last_assistant = loop.index0 -%}{%- endif -%}\n"
    "{%- endfor -%}\n"
    "{%- if messages[0]['role'] != 'system' -%}\n"
    "{{- '<|im_start|>system\\n' + " + json.dumps(FALCON_SYSTEM_PROMPT) + " + '<|im_end|>\\n' -}}\n"
    "{%- endif -%}\n"
    "{%- for m in messages -%}\n"
    "{%- if m['role'] == 'assistant' -%}\n"
    "{%- set content = m['content'] if m['content'] is string else '' -%}\n"
    "{%- if loop.index0 > ns.last_user -%}\n"
    "{%- if m.get('reasoning_content') -%}\n"
    "{%- set content = '<think>\\n' + m['reasoning_content'] | trim + '\\n</think>\\n\\n'"
    " + content.split('</think>')[-1] | trim -%}\n"
    "{%- endif -%}\n"
    "{%- else -%}\n"
    "{%- set content = content.split('</think>')[-1] | trim -%}\n"
    "{%- endif -%}\n"
    "{{- '<|im_start|>assistant\\n' -}}\n"
    "{%- if loop.index0 == ns.last_assistant -%}\n"
    "{%- generation -%}{{- content + '<|im_end|>' -}}{%- endgeneration -%}\n"
    "{%- else -%}\n"
    "{{- content + '<|im_end|>' -}}\n"
    "{%- endif -%}\n"
    "{{- '\\n' -}}\n"
    "{%- else -%}\n"
    "{{- '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' -}}\n"
    "{%- endif -%}\n"
    "{%- endfor -%}\n"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}\n"
)


def seed_corpus(n_per_domain: int = 48, seed: int = 0) -> list[str]:
    """Small built-in corpus in the tiny profile's four domains, so the tokenizer builds standalone.

    It only has to give BPE representative merges (words, code indentation, LaTeX, ChatML); the
    real task generators live in `falcon_h1r_lib.data`.
    """
    rng = random.Random(seed)
    # Rendered chats repeat the system prompt; a few copies let BPE shorten it (174 -> 118 tokens at vocab 512).
    docs = [FALCON_SYSTEM_PROMPT] * max(1, n_per_domain // 3)
    for _ in range(n_per_domain):
        docs += [_math_doc(rng), _code_doc(rng), _science_doc(rng), _instruction_doc(rng)]
    return docs


def build_tokenizer(
    corpus: Iterable[str] | None = None,
    vocab_size: int = 512,
    include_seed_corpus: bool = True,
    seed: int = 0,
    model_max_length: int = 4096,
) -> PreTrainedTokenizerFast:
    """Train the tiny byte-level BPE (digits one per token) and wrap it with the chat template.

    `vocab_size` counts every id, specials and `<think>`/`</think>` included (fewer only if the corpus
    runs out of pairs seen twice); training is deterministic for a given corpus and seed.
    """
    n_fixed = BYTE_ALPHABET_SIZE + len(SPECIAL_TOKENS) + len(REASONING_TOKENS)
    if vocab_size < n_fixed:
        raise ValueError(
            f"vocab_size={vocab_size} is below the {n_fixed} fixed ids (256 bytes + special tokens)"
        )
    texts: list[str] = list(seed_corpus(seed=seed)) if include_seed_corpus else []
    if corpus is not None:
        texts += [_check_text(t, i) for i, t in enumerate(corpus)]
    if not texts:
        raise ValueError("corpus is empty and include_seed_corpus=False: nothing to train the tokenizer on")

    tok = Tokenizer(models.BPE())
    # Digits first, so byte-level BPE can never merge a digit with anything (pre-tokens bound merges).
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - len(REASONING_TOKENS),
        min_frequency=2,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    # The trainer does not split on added tokens, so cut them out here: no merge may reach into `<|im_end|>`.
    tok.train_from_iterator((p for t in texts for p in _SPECIAL_RE.split(t) if p), trainer=trainer)
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in REASONING_TOKENS])
    return _wrap(tok, model_max_length)


def save_tokenizer(tokenizer: PreTrainedTokenizerFast, path: str | Path) -> Path:
    """Save with `save_pretrained` (tokenizer.json, tokenizer_config.json, chat_template.jinja)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(str(path))
    return path


# what a saved tokenizer is made of (a model folder's weights are not: they do not change how text is tokenized)
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
                   "chat_template.jinja", "chat_template.json", "tokenizer.model", "vocab.json", "merges.txt")


def _is_hub_id(name: str) -> bool:
    """``name`` or ``owner/name`` with the Hub's characters (``huggingface_hub.utils.validate_repo_id``)."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return True


def tokenizer_digest(path: str | Path) -> str:
    """sha256 over the ``TOKENIZER_FILES`` of a local tokenizer (or model) folder, so a stage's fingerprint follows
    the tokenizer's contents, not where it lies; a Hub id (``owner/name``, whose first part is no folder of the
    repository nor ``runs``) is returned as given (pin it by revision). Raises FileNotFoundError naming the folder when a local
    path is missing or holds none of those files."""
    import hashlib

    from falcon_h1r_lib.paths import repo_root, resolve_path

    folder = resolve_path(path)
    if not folder.is_dir():
        first = Path(str(path)).parts[0] if str(path) else ""
        if _is_hub_id(str(path)) and first != "runs" and not (repo_root() / first).exists():
            return str(path)
        raise FileNotFoundError(f"{folder}: no such tokenizer folder (and {str(path)!r} is not a Hub id)")
    files = [folder / name for name in TOKENIZER_FILES if (folder / name).is_file()]
    if not files:
        raise FileNotFoundError(f"{folder}: no tokenizer files ({', '.join(TOKENIZER_FILES)}) to fingerprint")
    h = hashlib.sha256()
    for f in files:
        h.update(f.name.encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def load_tokenizer(path: str | Path) -> PreTrainedTokenizerFast:
    """Load a tokenizer saved by `save_tokenizer` from a local directory (never the Hub)."""
    path = Path(path)
    if not (path / "tokenizer.json").is_file():
        raise FileNotFoundError(f"no tokenizer.json in {path}: not a directory written by save_tokenizer")
    return AutoTokenizer.from_pretrained(str(path), local_files_only=True)


def load_falcon_tokenizer(
    name_or_path: str | Path = "tiiuae/Falcon-H1R-7B",
    revision: str | None = None,
    force_chat_template: bool = False,
    padding_side: str = "left",
) -> PreTrainedTokenizerFast:
    """Full profile: the released tokenizer, with our chat template if it ships none, and eos = `<|im_end|>`.

    `force_chat_template=True` installs ours anyway, e.g. for SFT with `assistant_only_loss`, which
    needs the `{% generation %}` markers the Hub template lacks. A base model's eos ends documents; a chat
    turn ends with `<|im_end|>`, so that becomes the eos (the old eos stays the pad token if none is set).
    """
    tok = AutoTokenizer.from_pretrained(str(name_or_path), revision=revision)
    missing = [t for t in (IM_START, IM_END) if tok.convert_tokens_to_ids(t) in (None, tok.unk_token_id)]
    if force_chat_template or not tok.chat_template:
        if missing:
            raise ValueError(f"tokenizer {name_or_path} lacks the ChatML tokens {missing} our template needs")
        tok.chat_template = CHAT_TEMPLATE
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    if IM_END not in missing:
        tok.eos_token = IM_END  # generation and SFT end a turn here, not at the base model's end-of-text
    tok.padding_side = padding_side
    return tok


def _wrap(tok: Tokenizer, model_max_length: int) -> PreTrainedTokenizerFast:
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token=PAD_TOKEN,
        bos_token=ENDOFTEXT_TOKEN,
        eos_token=IM_END,
        extra_special_tokens=[IM_START],
        padding_side="left",  # generation: prompts end flush with the first new token
        clean_up_tokenization_spaces=False,  # otherwise decode(" ,") != " ," and round trips break
        model_max_length=model_max_length,
        chat_template=CHAT_TEMPLATE,
    )


def _check_text(text: object, index: int) -> str:
    if not isinstance(text, str):
        raise TypeError(f"corpus item {index} is {type(text).__name__}, expected str")
    return text


# --- seed corpus: one small generator per domain, Falcon format (<think> ... </think> then the answer) ---

_NATURE_WORDS = (
    "the quick river flows north across green hills while old trees stand near quiet stone walls "
    "every small bird sings before light rain falls on warm fields and clear lakes"
)


def _chat(user: str, reasoning: str, answer: str) -> str:
    return (
        f"{IM_START}user\n{user}{IM_END}\n{IM_START}assistant\n"
        f"{THINK_START}\n{reasoning}\n{THINK_END}\n\n{answer}{IM_END}\n"
    )


def _math_doc(rng: random.Random) -> str:
    kind = rng.choice(("add", "mul", "equation", "fraction"))
    if kind == "add":
        a, b = rng.randint(10, 9999), rng.randint(10, 9999)
        return _chat(f"What is {a} + {b}?", f"{a} + {b} = {a + b}", f"The answer is \\boxed{{{a + b}}}.")
    if kind == "mul":
        a, b = rng.randint(2, 99), rng.randint(2, 9)
        return _chat(f"Compute {a} * {b}.", f"{a} * {b} = {a * b}", f"\\boxed{{{a * b}}}")
    if kind == "equation":
        x, a, b = rng.randint(-9, 9), rng.randint(2, 9), rng.randint(1, 20)
        c = a * x + b
        steps = f"{a}x + {b} = {c}\n{a}x = {c} - {b} = {c - b}\nx = {c - b} / {a} = {x}"
        return _chat(f"Solve for x: {a}x + {b} = {c}.", steps, f"So x = \\boxed{{{x}}}.")
    p, q, r, s = rng.randint(1, 9), rng.randint(2, 9), rng.randint(1, 9), rng.randint(2, 9)
    return _chat(
        f"Add the fractions {p}/{q} and {r}/{s}.",
        f"\\frac{{{p}}}{{{q}}} + \\frac{{{r}}}{{{s}}} = \\frac{{{p * s + r * q}}}{{{q * s}}}",
        f"\\boxed{{\\frac{{{p * s + r * q}}}{{{q * s}}}}}",
    )


def _code_doc(rng: random.Random) -> str:
    name, op = rng.choice((("add", "+"), ("sub", "-"), ("mul", "*")))
    n = rng.randint(2, 9)
    code = (
        f"```python\ndef {name}_all(values):\n    total = values[0]\n    for v in values[1:]:\n"
        f"        total = total {op} v\n    return total\n\n\nprint({name}_all(list(range(1, {n}))))\n```"
    )
    return _chat(
        f"Write a Python function {name}_all(values) that folds a list with {op}.",
        f"Start from the first value and apply {op} to each next value in a for loop.",
        code,
    )


def _science_doc(rng: random.Random) -> str:
    facts = (
        ("Which planet is closest to the Sun?", ("Mercury", "Venus", "Earth", "Mars")),
        ("Which gas do plants take in for photosynthesis?", ("Carbon dioxide", "Oxygen", "Helium", "Neon")),
        ("What is the chemical symbol of sodium?", ("Na", "So", "Sd", "S")),
        ("Which particle has a negative charge?", ("Electron", "Proton", "Neutron", "Photon")),
    )
    question, options = rng.choice(facts)
    order = list(options)
    rng.shuffle(order)
    letter = "ABCD"[order.index(options[0])]
    listing = "\n".join(f"{k}. {o}" for k, o in zip("ABCD", order))
    return _chat(f"{question}\n{listing}", f"The correct option is {options[0]}.", f"\\boxed{{{letter}}}")


def _instruction_doc(rng: random.Random) -> str:
    n = rng.randint(2, 6)
    vocabulary = _NATURE_WORDS.split()
    words = [rng.choice(vocabulary) for _ in range(n)]
    return _chat(
        f"Write exactly {n} lowercase words about nature, separated by single spaces.",
        f"I need {n} words, all lowercase.",
        " ".join(words),
    )
