"""Stage 01 (`falcon_h1r_lib.architecture`): one run at toy sizes (width 32, two short decode lengths, one SSD
length, vLLM replaced by a fake engine) writes the metrics notebook 01 always wrote, and its CLI loads a YAML."""

import functools
import json
import os
from types import SimpleNamespace

import pytest
import torch
import yaml

from falcon_h1r_lib import architecture
from falcon_h1r_lib import models as M
from falcon_h1r_lib.config import ConfigError
from falcon_h1r_lib.configs import ArchitectureConfig
from falcon_h1r_lib.generation import vllm_bench
from falcon_h1r_lib.models.compare import kv_bytes_per_token
from falcon_h1r_lib.stages import output_path, recorded_config

TOY = {"profile": "tiny", "seed": 0, "tiny_width": 32, "vocab_size": 300, "analytic_context_lens": [4096, 8192],
       "decode_context_lens": [8, 16], "decode_batch": 1, "decode_new_tokens": 2, "decode_repeats": 1,
       "bench_lengths": [16], "fig8_batches": [2], "fig8_output_lens": [4], "fig8_prompt_len": 8,
       "fig8_repeats": 1, "fig8_threads": 1}
# the keys notebook 01 wrote before the stage existed, in its order (the full profile adds released_config_...)
METRIC_KEYS = ["falcon_h1r_7b_parameters", "falcon_h1r_7b_rel_error_vs_paper", "tiny_parameters", "twin_parameters",
               "qwen3_8b_parameters", "kv_bytes_per_token", "constant_state_bytes",
               "kv_per_token_ratio_qwen3_over_falcon", "cache_GiB_at_longest", "decode",
               "decode_speed_ratio_hybrid_over_twin", "cache_ratio_twin_over_hybrid", "ssd", "fig8_vllm"]


class FakeEngine:
    """Stands in for `vllm_bench.VLLMEngine`: returns the asked lengths at once."""

    def __init__(self, path, *, max_model_len, max_num_seqs, seed, enable_prefix_caching):
        pass

    def info(self):
        return {"max_concurrency": 1e6, "enable_prefix_caching": True, "vllm_version": "fake"}

    def generate(self, prompts, max_tokens, temperature, top_p):
        return [max_tokens] * len(prompts)

    def shutdown(self):
        pass


@pytest.fixture(scope="module")
def staged(tmp_path_factory):
    """One toy run of the stage under a private runs root."""
    mp = pytest.MonkeyPatch()
    mp.setenv("FALCON_H1R_RUNS", str(tmp_path_factory.mktemp("runs")))
    mp.setattr(vllm_bench, "run_fig8", functools.partial(vllm_bench.run_fig8, engine_cls=FakeEngine,
                                                         kv_cache_gib=1, progress=False))
    torch.set_num_threads(1)
    cfg = ArchitectureConfig.from_dict(TOY)
    try:
        yield cfg, architecture.run(cfg)
    finally:
        mp.undo()


def test_run_writes_the_notebooks_metrics(staged):
    cfg, result = staged
    assert list(result.metrics) == METRIC_KEYS
    assert result.metrics_path == output_path("01_architecture", "metrics", "tiny")
    record = json.loads(result.metrics_path.read_text())
    assert record["stage"] == "01_architecture" and list(record["metrics"]) == METRIC_KEYS
    assert record["reads"] == ["data_manifests/paper_results.yaml"]
    assert recorded_config("01_architecture", "tiny") == cfg


def test_run_numbers_come_from_the_library(staged):
    cfg, result = staged
    m = result.metrics
    falcon_7b = M.falcon_h1_config("falcon-h1r-7b")
    assert m["falcon_h1r_7b_parameters"] == M.count_parameters(falcon_7b) == result.parameters_7b_meta
    assert m["falcon_h1r_7b_rel_error_vs_paper"] == abs(m["falcon_h1r_7b_parameters"] - 7.59e9) / 7.59e9
    assert result.table8["match"].all() and result.released is None
    tiny = M.falcon_h1_config("tiny", width=32, vocab_size=300)
    assert m["tiny_parameters"] == M.count_parameters(tiny) == result.sizes.parameters[2]
    assert list(result.cache_memory.context_len.unique()) == [4096, 8192]
    per_token = {n: kv_bytes_per_token(c, torch.bfloat16)
                 for n, c in (("Falcon-H1R-7B", falcon_7b), ("Qwen3-8B", M.transformer_config("qwen3-8b")))}
    assert m["kv_bytes_per_token"] == per_token
    assert m["kv_per_token_ratio_qwen3_over_falcon"] == per_token["Qwen3-8B"] / per_token["Falcon-H1R-7B"] > 1
    assert set(m["cache_GiB_at_longest"]) == {"Falcon-H1R-7B", "Qwen3-8B"}
    # decode: one row per model and length; the measured cache is the accounting's prediction
    assert [(r["model"], r["context_len"]) for r in m["decode"]] == [
        ("tiny hybrid", 8), ("tiny twin", 8), ("tiny hybrid", 16), ("tiny twin", 16)]
    assert list(m["decode"][0]) == list(architecture.DECODE_COLUMNS)
    for r in result.decode_rows:
        assert sum(r["cache_bytes"].values()) == sum(r["cache_bytes_predicted"].values())
    assert set(m["decode_speed_ratio_hybrid_over_twin"]) == {8, 16}
    assert (result.decode_cache["tiny twin"] > result.decode_cache["tiny hybrid"]).all()
    assert [r["length"] for r in m["ssd"]] == [16] and m["ssd"][0]["chunked_rel_err"] <= 1e-4


def test_run_reads_fig8_back_from_its_files(staged):
    cfg, result = staged
    csv_path, json_path = result.fig8_files
    assert csv_path.exists() and json_path.parent == cfg.run_dir() / "fig8_vllm"
    fig8 = result.metrics["fig8_vllm"]
    assert fig8["rows"] == vllm_bench.read_results(json_path)["rows"] and len(fig8["rows"]) == 1
    assert set(fig8["engine_start_s"]) == {"hybrid", "twin"}
    assert fig8["settings"]["batches"] == [2] and fig8["settings"]["prompt_len"] == 8
    assert list(result.fig8_table.batch) == [2] and "paper_falcon_over_qwen3" in result.fig8_table
    assert (result.engines.max_concurrency >= 2).all()
    assert "falcon_over_qwen3" in result.paper_gain and "setting" in result.paper_fig8


def test_cli_refuses_a_bad_config_naming_the_key(tmp_path):
    bad, good = tmp_path / "bad.yaml", tmp_path / "good.yaml"
    bad.write_text(yaml.safe_dump({**TOY, "tiny_widht": 64}))
    good.write_text(yaml.safe_dump(TOY))
    with pytest.raises(ConfigError, match="tiny_widht"):
        architecture.main(["--config", str(bad)])
    with pytest.raises(ConfigError, match="decode_batch"):
        architecture.main(["--config", str(good), "--set", "decode_batch=0"])
    with pytest.raises(SystemExit):
        architecture.main([])


def test_cli_runs_the_stage_with_the_yaml_and_overrides(tmp_path, monkeypatch, capsys):
    seen = []

    def fake_run(cfg):
        seen.append(cfg)
        metrics = {k: 1 for k in METRIC_KEYS}
        return SimpleNamespace(metrics=metrics, metrics_path=tmp_path / "metrics.json")

    monkeypatch.setattr(architecture, "run", fake_run)
    monkeypatch.delenv("VLLM_LOGGING_LEVEL", raising=False)
    path = tmp_path / "01_architecture.yaml"
    path.write_text(yaml.safe_dump(TOY))
    assert architecture.main(["--config", str(path), "--set", "tiny_width=48"]) == 0
    assert seen == [ArchitectureConfig.from_dict({**TOY, "tiny_width": 48})]
    assert json.loads(capsys.readouterr().out)["falcon_h1r_7b_parameters"] == 1
    assert os.environ["VLLM_LOGGING_LEVEL"] == "WARNING"
