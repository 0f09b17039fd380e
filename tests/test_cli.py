"""The shared model-running command line (evaluation and DeepConf entry points)."""

import pytest

from falcon_h1r_lib.cli import model_run_parser, parse_models, parse_overrides
from falcon_h1r_lib.config import ConfigError


def test_models_take_labels_or_the_last_path_component():
    assert parse_models(["runs/tiny/03_sft/sft/", "rl=runs/tiny/04_rl/rl", "tiiuae/Falcon-H1R-7B"]) == {
        "sft": "runs/tiny/03_sft/sft/", "rl": "runs/tiny/04_rl/rl", "Falcon-H1R-7B": "tiiuae/Falcon-H1R-7B"}
    with pytest.raises(ConfigError, match="'sft' given twice"):
        parse_models(["a/sft", "b/sft"])


def test_overrides_are_yaml_values_and_bad_items_are_named():
    assert parse_overrides(["max_problems=3", "benchmarks=[tiny-math, tiny-code]", "top_p=0.95"]) == {
        "max_problems": 3, "benchmarks": ["tiny-math", "tiny-code"], "top_p": 0.95}
    with pytest.raises(ConfigError, match="'max_problems'"):
        parse_overrides(["max_problems"])


def test_parser_has_the_four_options():
    args = model_run_parser("p", "d", "cfg", "models", "out").parse_args(
        ["--config", "x.yaml", "--model", "a", "--model", "b", "--set", "k=1"])
    assert (args.config, args.model, args.out, args.set) == ("x.yaml", ["a", "b"], None, ["k=1"])
