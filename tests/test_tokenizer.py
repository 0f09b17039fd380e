"""Tiny tokenizer and Falcon-H1R chat template: lossless, digit-wise, deterministic, maskable."""

import json
import random
import string

import pytest

from falcon_h1r_lib.tokenizer import (
    CHAT_TEMPLATE,
    FALCON_SYSTEM_PROMPT,
    IM_END,
    IM_START,
    PAD_TOKEN,
    REASONING_TOKENS,
    SPECIAL_TOKENS,
    build_tokenizer,
    load_falcon_tokenizer,
    load_tokenizer,
    save_tokenizer,
    seed_corpus,
)

CONVERSATION = [
    {"role": "user", "content": "What is 12 + 30?"},
    {"role": "assistant", "content": "<think>\n2 + 0 = 2\n1 + 3 = 4\n</think>\n\nThe sum is \\boxed{42}."},
    {"role": "user", "content": "Now double it."},
    {"role": "assistant", "content": "<think>\n42 * 2 = 84\n</think>\n\n\\boxed{84}"},
]


@pytest.fixture(scope="module")
def tok():
    return build_tokenizer()


def _random_ascii(rng: random.Random, n: int) -> str:
    alphabet = string.printable  # letters, digits, punctuation, space, \t \n \r \x0b \x0c
    return "".join(rng.choice(alphabet) for _ in range(n))


def test_round_trip_arbitrary_text(tok):
    fixed = [
        "",
        " ",
        "What is 1234 + 5678?",
        "def f(x):\n    if x:\n\treturn  x\n\n\n",
        "  leading and trailing  ",
        " ,  . ! ? 's n't",
        "\\boxed{\\frac{3}{4}}",
        "<think>\n3+4=7\n</think>\n\nA",
        "héllo ☃ — 数学",
    ]
    rng = random.Random(0)
    for text in fixed + [_random_ascii(rng, rng.randint(1, 80)) for _ in range(300)]:
        assert tok.decode(tok.encode(text)) == text, repr(text)


def test_digits_are_one_token_each(tok):
    ids = tok.encode("x=9876543210")
    pieces = tok.convert_ids_to_tokens(ids)
    assert pieces[-10:] == list("9876543210")
    glued = [t for t in tok.get_vocab() if len(t) > 1 and any(c in string.digits for c in t)]
    assert glued == [], glued
    merges = json.loads(tok.backend_tokenizer.to_str())["model"]["merges"]
    assert merges and not [m for m in merges if any(c in string.digits for c in "".join(m))]


def test_digit_merges_absent_even_when_corpus_is_all_numbers():
    tok = build_tokenizer(["1234 1234 5678 12 12 12 00 00"] * 50, vocab_size=300)
    assert [t for t in tok.get_vocab() if len(t) > 1 and any(c in string.digits for c in t)] == []


def test_special_tokens_are_single_tokens(tok):
    for t in SPECIAL_TOKENS + REASONING_TOKENS:
        ids = tok.encode(f"a{t}b")
        assert tok.convert_ids_to_tokens(ids)[1] == t and len(ids) == 3, t
    assert tok.pad_token == PAD_TOKEN and tok.pad_token_id == 0
    assert tok.eos_token == IM_END and tok.padding_side == "left"
    # <think> survives skip_special_tokens (format rewards read it); ChatML markers do not.
    text = f"{IM_START}assistant\n<think>r</think>a{IM_END}"
    assert tok.decode(tok.encode(text), skip_special_tokens=True) == "assistant\n<think>r</think>a"


def test_left_padding(tok):
    batch = tok(["1", "1 2 3"], padding=True)
    assert batch["input_ids"][0][0] == tok.pad_token_id and batch["attention_mask"][0][0] == 0
    assert batch["input_ids"][0][-1] == tok.convert_tokens_to_ids("1")


def test_vocab_size_respected():
    assert len(build_tokenizer()) == 512
    assert len(build_tokenizer(vocab_size=300)) == 300
    with pytest.raises(ValueError, match="vocab_size=200"):
        build_tokenizer(vocab_size=200)


def test_build_is_deterministic():
    corpus = [f"alpha beta {i} gamma delta" for i in range(200)]
    a, b = build_tokenizer(corpus, vocab_size=400), build_tokenizer(corpus, vocab_size=400)
    assert a.backend_tokenizer.to_str() == b.backend_tokenizer.to_str()
    assert seed_corpus() == seed_corpus() and seed_corpus(seed=1) != seed_corpus()


def test_corpus_shapes_the_vocabulary():
    base = build_tokenizer(vocab_size=400)
    tuned = build_tokenizer(["photosynthesis"] * 100, vocab_size=400)
    assert len(tuned.encode("photosynthesis")) == 1 < len(base.encode("photosynthesis"))
    with pytest.raises(TypeError, match="corpus item 1"):
        build_tokenizer(["ok", 3])
    with pytest.raises(ValueError, match="corpus is empty"):
        build_tokenizer([], include_seed_corpus=False)


def test_chat_template_inserts_default_system_prompt(tok):
    text = tok.apply_chat_template(
        [{"role": "user", "content": "Hi"}], tokenize=False, add_generation_prompt=True
    )
    assert text == (
        f"{IM_START}system\n{FALCON_SYSTEM_PROMPT}{IM_END}\n{IM_START}user\nHi{IM_END}\n{IM_START}assistant\n"
    )
    own = tok.apply_chat_template(
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}], tokenize=False
    )
    assert own == f"{IM_START}system\nBe brief.{IM_END}\n{IM_START}user\nHi{IM_END}\n"


def test_system_prompt_is_verbatim_from_paper():
    assert FALCON_SYSTEM_PROMPT.startswith("You are Falcon, a helpful AI assistant created by Technology")
    assert FALCON_SYSTEM_PROMPT.endswith("i.e., <think> reasoning process here </think> answer here.")


def test_earlier_reasoning_is_stripped_and_last_kept(tok):
    text = tok.apply_chat_template(CONVERSATION, tokenize=False)
    assert "1 + 3 = 4" not in text  # first assistant turn: answer only
    assert f"{IM_START}assistant\nThe sum is \\boxed{{42}}.{IM_END}\n" in text
    assert text.endswith(f"{IM_START}assistant\n{CONVERSATION[3]['content']}{IM_END}\n")
    # Prompting a new turn after a user message: every earlier turn loses its reasoning.
    prompt = tok.apply_chat_template(CONVERSATION[:3], tokenize=False, add_generation_prompt=True)
    assert "<think>" not in prompt.replace(FALCON_SYSTEM_PROMPT, "")
    assert prompt.endswith(f"Now double it.{IM_END}\n{IM_START}assistant\n")


def test_reasoning_content_field_is_rendered(tok):
    msgs = [
        {"role": "user", "content": "Q"},
        {"role": "assistant", "content": "A", "reasoning_content": " R "},
    ]
    text = tok.apply_chat_template(msgs, tokenize=False)
    assert text.endswith(f"{IM_START}assistant\n<think>\nR\n</think>\n\nA{IM_END}\n")


def test_assistant_mask_covers_last_turn_content_and_end_marker(tok):
    out = tok.apply_chat_template(CONVERSATION, return_dict=True, return_assistant_tokens_mask=True)
    ids, mask = out["input_ids"], out["assistant_masks"]
    assert len(ids) == len(mask)
    first = mask.index(1)
    span = ids[first:]
    # one contiguous block, ending right before the final newline
    assert mask[first:] == [1] * (len(ids) - first - 1) + [0] and sum(mask) == len(span) - 1
    assert tok.decode(span[:-1]) == CONVERSATION[3]["content"] + IM_END
    assert tok.decode(ids[:first]).endswith(f"{IM_START}assistant\n")
    batched = tok.apply_chat_template(
        [CONVERSATION, CONVERSATION[:2]], return_dict=True, return_assistant_tokens_mask=True
    )
    assert batched["assistant_masks"][0] == mask and sum(batched["assistant_masks"][1]) > 0


def test_save_load_round_trip(tok, tmp_path):
    save_tokenizer(tok, tmp_path / "tok")
    loaded = load_tokenizer(tmp_path / "tok")
    text = tok.apply_chat_template(CONVERSATION, tokenize=False) + " 3.14 \n\tdef"
    assert loaded.encode(text) == tok.encode(text)
    assert loaded.chat_template == tok.chat_template == CHAT_TEMPLATE
    assert (loaded.padding_side, loaded.eos_token, loaded.pad_token) == ("left", IM_END, PAD_TOKEN)
    assert loaded.decode(loaded.encode(" , .")) == " , ."
    with pytest.raises(FileNotFoundError, match="tokenizer.json"):
        load_tokenizer(tmp_path / "missing")


def test_load_falcon_tokenizer_installs_template_only_when_missing(tok, tmp_path):
    bare = load_tokenizer(save_tokenizer(tok, tmp_path / "a"))
    bare.chat_template = None
    bare.padding_side = "right"
    bare.save_pretrained(str(tmp_path / "bare"))
    loaded = load_falcon_tokenizer(tmp_path / "bare")
    assert loaded.chat_template == CHAT_TEMPLATE and loaded.padding_side == "left"

    other = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
    bare.chat_template = other
    bare.save_pretrained(str(tmp_path / "hub_like"))
    assert load_falcon_tokenizer(tmp_path / "hub_like").chat_template == other
    assert (
        load_falcon_tokenizer(tmp_path / "hub_like", force_chat_template=True).chat_template == CHAT_TEMPLATE
    )


def test_only_last_assistant_turn_is_masked_even_before_a_user_turn(tok):
    msgs = CONVERSATION[:3]  # [user, assistant, user]: the shape TRL probes for stop-token training
    out = tok.apply_chat_template(msgs, return_dict=True, return_assistant_tokens_mask=True)
    masked = [i for i, m in zip(out["input_ids"], out["assistant_masks"]) if m]
    assert tok.decode(masked) == "The sum is \\boxed{42}." + IM_END
    from trl.chat_template_utils import has_generation_markers, is_chat_template_stop_token_trained

    assert has_generation_markers(tok.chat_template) and is_chat_template_stop_token_trained(tok)


def test_load_falcon_tokenizer_refuses_template_without_chatml_tokens(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    raw = Tokenizer(models.BPE(unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.ByteLevel()
    raw.add_special_tokens(["<unk>", "</s>"])
    PreTrainedTokenizerFast(tokenizer_object=raw, unk_token="<unk>", eos_token="</s>").save_pretrained(
        str(tmp_path / "plain")
    )
    with pytest.raises(ValueError, match="lacks the ChatML tokens"):
        load_falcon_tokenizer(tmp_path / "plain")


def test_tokenizer_digest_follows_content_and_refuses_a_missing_local_folder(tmp_path, monkeypatch):
    """Before: a missing local folder (a typo, notebook 02 not run) was "fingerprinted" as its path string."""
    from falcon_h1r_lib.tokenizer import tokenizer_digest

    monkeypatch.setenv("FALCON_H1R_RUNS", str(tmp_path / "runs"))
    assert tokenizer_digest("tiiuae/Falcon-H1R-7B") == "tiiuae/Falcon-H1R-7B"  # a Hub id: pinned by revision
    for missing in (tmp_path / "nope", "runs/tiny/02_data_curation/tokenizer", "runs/nope"):
        with pytest.raises(FileNotFoundError, match="no such tokenizer folder"):
            tokenizer_digest(missing)
    (tmp_path / "tok").mkdir()
    with pytest.raises(FileNotFoundError, match="no tokenizer files"):
        tokenizer_digest(tmp_path / "tok")
    (tmp_path / "tok" / "tokenizer.json").write_text("{}")
    first = tokenizer_digest(tmp_path / "tok")
    (tmp_path / "tok" / "tokenizer.json").write_text('{"a": 1}')
    assert tokenizer_digest(tmp_path / "tok") != first
