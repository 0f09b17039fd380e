"""Shared fixtures: the tiny tokenizer and a width-32 random FalconH1, built once per test module."""

from __future__ import annotations

import pytest
import torch

from falcon_h1r_lib.models import build_model, falcon_h1_config
from falcon_h1r_lib.tokenizer import build_tokenizer


@pytest.fixture(scope="module")
def tok():
    return build_tokenizer(vocab_size=300)


@pytest.fixture(scope="module")
def model(tok):
    torch.set_num_threads(1)
    return build_model(falcon_h1_config("tiny", width=32, vocab_size=len(tok)), seed=0)
