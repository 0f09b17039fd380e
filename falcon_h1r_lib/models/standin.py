"""A local stand-in for ``tiiuae/Falcon-H1-7B-Base``, so the full profile's code path runs offline on a CPU (rehearsal).

The model is the Falcon-H1R-7B preset scaled by the one tiny dial (``falcon_h1_config("tiny", width=...)``), randomly
initialised and saved in Hugging Face format beside a tokenizer that has Falcon's ChatML special tokens and our chat
template. ``standin.json`` records the dial, so ``sft.base.check_base_config`` checks the saved config against the
7B preset scaled by that dial (every Table 8 field and the parameter count) instead of against Table 8 itself.

Departures from the real base model, each on purpose:
- the tokenizer is the tiny byte-level BPE (digits one per token), not Falcon's 130K vocabulary; like a base model's,
  its eos is the document end ``<|endoftext|>`` (the real base's end-of-text token name was not read offline), so
  the SFT stage must switch it to ``<|im_end|>`` itself;
- the µP multipliers are those of a small public Falcon-H1 config (``STANDIN_MUP``), because the 7B's are not public
  and the SFT stage refuses the paper's learning rate on a model without µP multipliers.

``python -m falcon_h1r_lib.models.standin [--out DIR] [--width W]`` writes it (skipped when already there).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

STANDS_IN_FOR = "tiiuae/Falcon-H1-7B-Base"
DEFAULT_OUT = f"runs/rehearsal/hub/{STANDS_IN_FOR}"
STANDIN_FILE = "standin.json"  # marks a stand-in folder; read by sft.base.check_base_config
STANDIN_VERSION = 1  # bump when the written model or tokenizer changes

# µP forward multipliers of a small public Falcon-H1 config (0.5B-like, ../reference falcon_h1r_facts.md), NOT the 7B's
# (not found). They only make the stand-in a µP model; the SFT stage checks that such multipliers are present.
STANDIN_MUP: dict[str, Any] = {
    "embedding_multiplier": 5.656854,
    "lm_head_multiplier": 0.0390625,
    "key_multiplier": 0.390625,
    "attention_out_multiplier": 0.9375,
    "ssm_in_multiplier": 1.25,
    "ssm_out_multiplier": 0.2357,
    "mlp_multipliers": [0.8839, 0.5859],
    "ssm_multipliers": [0.3536, 0.25, 0.3536, 0.5, 0.3536],
}


def standin_tokenizer(vocab_size: int = 512, seed: int = 0):
    """The tiny BPE with ChatML tokens and our chat template; eos = ``<|endoftext|>``, as a base model's."""
    from falcon_h1r_lib.tokenizer import ENDOFTEXT_TOKEN, build_tokenizer

    tok = build_tokenizer(vocab_size=vocab_size, seed=seed)
    tok.eos_token = ENDOFTEXT_TOKEN  # a base model ends documents, not chat turns
    return tok


def standin_config(width: int, vocab_size: int, **token_ids: Any):
    """The 7B preset scaled by the dial ``width`` (``presets.TINY_RULES``), with ``STANDIN_MUP`` multipliers."""
    from falcon_h1r_lib.models.presets import falcon_h1_config

    return falcon_h1_config("tiny", width=width, vocab_size=vocab_size, **STANDIN_MUP, **token_ids)


def read_standin(path: str | Path) -> dict[str, Any] | None:
    """The ``standin.json`` record of a stand-in folder, or None for any other model (a Hub id, a real checkpoint)."""
    p = Path(path) / STANDIN_FILE
    return json.loads(p.read_text()) if p.is_file() else None


def expected_config(record: dict[str, Any]):
    """The config a stand-in must have: the 7B preset scaled by the dial its record names."""
    return standin_config(record["dial"]["width"], record["vocab_size"])


def write_standin(out: str | Path = DEFAULT_OUT, width: int = 128, vocab_size: int = 512, seed: int = 0,
                  force: bool = False) -> Path:
    """Write the stand-in (config, safetensors, tokenizer, ``standin.json``) to ``out``; skipped when it is there."""
    from falcon_h1r_lib.models import build_model
    from falcon_h1r_lib.paths import resolve_path
    from falcon_h1r_lib.tokenizer import ENDOFTEXT_TOKEN

    out = resolve_path(out)
    record = {"stands_in_for": STANDS_IN_FOR, "preset": "falcon-h1r-7b", "dial": {"width": width},
              "vocab_size": None, "seed": seed, "init": "random", "mup": STANDIN_MUP, "version": STANDIN_VERSION}
    old = read_standin(out)
    if old is not None and not force and {k: v for k, v in old.items() if k != "vocab_size"} == {
            k: v for k, v in record.items() if k != "vocab_size"} and (out / "config.json").exists():
        return out
    tok = standin_tokenizer(vocab_size, seed)
    record["vocab_size"] = len(tok)
    config = standin_config(width, len(tok), pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
                            bos_token_id=tok.convert_tokens_to_ids(ENDOFTEXT_TOKEN))
    model = build_model(config, seed=seed)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    (out / STANDIN_FILE).write_text(json.dumps(record, indent=2) + "\n")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m falcon_h1r_lib.models.standin", description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=DEFAULT_OUT, help=f"folder to write (default {DEFAULT_OUT}, under the runs root)")
    parser.add_argument("--width", type=int, default=128,
                        help="the tiny dial (hidden size; 128 gives head_dim 32, the smallest vLLM-CPU attention takes); 7B: 3072")
    parser.add_argument("--vocab-size", type=int, default=512, help="tiny tokenizer vocabulary; 7B: 130,048")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--force", action="store_true", help="rewrite even when a matching stand-in is there")
    args = parser.parse_args(argv)
    print(write_standin(args.out, args.width, args.vocab_size, args.seed, args.force))
    return 0


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["DEFAULT_OUT", "STANDIN_FILE", "STANDIN_MUP", "STANDS_IN_FOR", "expected_config", "main", "read_standin",
           "standin_config", "standin_tokenizer", "write_standin"]
