"""Every notebook figure (`falcon_h1r_lib.plots`) drawn under Agg from a small input of the schema its producer
writes (named beside each builder), and a missing key or column refused by name."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from falcon_h1r_lib import architecture, plots
from falcon_h1r_lib.deepconf import experiment
from falcon_h1r_lib.evaluation import results_records
from falcon_h1r_lib.evaluation.headroom import pass_at_k_curve
from falcon_h1r_lib.generation import vllm_bench
from falcon_h1r_lib.kernels import bench as ssd_bench
from falcon_h1r_lib.models import falcon_h1_config, transformer_config
from falcon_h1r_lib.models.compare import cache_memory_table

DOMAINS = ("math", "code", "science", "other")


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


# --- inputs, one builder per producer ----------------------------------------------------------


def cache_memory():  # models.compare.cache_memory_table (notebook 01, section 3)
    configs = {"Falcon-H1R-7B": falcon_h1_config("falcon-h1r-7b"), "Qwen3-8B": transformer_config("qwen3-8b")}
    return cache_memory_table(configs, [4096, 16384, 65536])


def decode():  # architecture.run: metrics["decode"] (models.measure.compare_decode rows, DECODE_COLUMNS)
    rows = []
    for L in (256, 1024):
        for model, tok_s, cache in (("tiny hybrid", 900.0, 3e5 + 100 * L), ("tiny twin", 1000.0, 400 * L)):
            rows.append({"model": model, "context_len": L, "tokens_per_s": tok_s, "ms_per_step": 4.0,
                         "prefill_s_median": 0.01, "cache_bytes_total": cache, "speed_ratio": 1.0})
    return pd.DataFrame(rows, columns=architecture.DECODE_COLUMNS)


def kernels():  # kernels.bench.benchmark rows, measured at toy size
    return pd.DataFrame(ssd_bench.benchmark(lengths=(8, 16), heads=2, head_dim=4, state=4, chunk_sizes=(4,),
                                            repeats=1))


def fig8_measured():  # generation.vllm_bench: fig8_vs_paper(fig8_table(raw)) and the record's machine/settings
    raw = [{"model": m, "repeat": 0, "batch": b, "output_len": 256, "prompt_len": 512, "tokens": b * 256,
            "seconds": s, "tok_s": b * 256 / s} for b in (16, 64) for m, s in (("hybrid", 2.0), ("twin", 2.5))]
    points, gain = architecture.paper_fig8()
    return vllm_bench.fig8_vs_paper(vllm_bench.fig8_table(raw), points), gain, {
        "machine": {"cpu_count": 2}, "settings": {"threads": 1}}


def funnel_02():  # data.curation.funnel_table rows (notebook 02 metrics["funnel"]), as the notebook frames them
    steps = [("schema[problem]", 100, 100), ("dedup_exact", 100, 90), ("split_sft_rl", 90, 60),
             ("schema[trace]", 720, 700), ("verify", 700, 500), ("mix_to_shares", 500, 400)]
    return pd.DataFrame([{"step": s, "in": i, "out": o, "dropped": i - o} for s, i, o in steps]).fillna(0)


def lengths():  # notebook 02: one row per SFT trace (domain, difficulty, response tokens)
    rng = np.random.default_rng(0)
    return pd.DataFrame({"domain": np.repeat(DOMAINS[:3], 20), "level": np.tile(np.arange(1, 6), 12),
                         "tokens": rng.integers(5, 200, 60)})


def mixture():  # notebook 02: metrics["mixture_sft"] beside paper_results' fig3_sft_mixture
    ours = {d: {"samples": 10, "sample_share": 0.25, "tokens": 100, "token_share": s}
            for d, s in zip(DOMAINS, (0.57, 0.3, 0.07, 0.06))}
    o = pd.DataFrame(ours).T
    return pd.DataFrame({"ours: samples": o.sample_share.astype(float), "paper: samples": [0.56, 0.3, 0.07, 0.07],
                         "ours: tokens": o.token_share.astype(float), "paper: tokens": [0.568, 0.298, 0.071, 0.064]})


def per_problem():  # notebook 02: SFT rows' id, difficulty, pass_rate, difficulty_bucket, weight
    return pd.DataFrame({"id": range(6), "level": [1, 1, 2, 3, 4, 5], "pass_rate": [1.0, 0.9, 0.5, 0.5, 0.25, 0.0],
                         "bucket": ["easy", "easy", "medium", "medium", "hard", "hard"],
                         "weight": [0.5, 0.5, 1.0, 1.0, 1.5, 1.75]})


def sft_metrics():  # sft.run: metrics["pretrain"], metrics["sft"] with loss_log entries
    log = [{"step": s, "loss": 3.0 / s, "learning_rate": 1e-3} for s in (25, 50, 75)]
    return {"pretrain": {"steps": 75, "loss_log": log}, "sft": {"steps": 75, "loss_log": log}}


def accuracy_table():  # sft.accuracy_table: indexed by benchmark
    return pd.DataFrame([{"benchmark": b, "domain": d, "problems": 16, "samples/problem": 4,
                          "base pass@1": 0.1, "base CI": [0.0, 0.2], "SFT pass@1": 0.3, "SFT CI": [0.2, 0.4]}
                         for b, d in (("tiny-math", "math"), ("tiny-code", "code"))]).set_index("benchmark")


def rl_funnel():  # rl: metrics["data"]["funnel"], framed by step
    return pd.DataFrame([{"step": "pool", "in": 50, "out": 50, "dropped": 0},
                         {"step": "rl_filter", "in": 50, "out": 20, "dropped": 30}]).set_index("step")


def rl_hist():  # rl_data.pass_rate_histogram before and after the Fig. 9 filter (k = 4)
    return pd.DataFrame({"before filter": {f"{c}/4": n for c, n in enumerate((10, 5, 5, 5, 25))},
                         "after filter": {f"{c}/4": n for c, n in enumerate((2, 5, 5, 5, 0))}})


def rl_curves():  # rl.curves(log_history): one row per logged step, CURVE_KEYS names
    steps = np.arange(1, 8)
    return pd.DataFrame({"step": steps, "reward": steps / 10, "accuracy": steps / 10, "response_length": 50.0,
                         "entropy": 1.0, "clip_fraction": 0.0, "zero_std_fraction": 0.5, "format_ok": 1.0}
                        ).set_index("step")


def rl_headroom():  # rl.report.headroom_tables: evaluation.headroom.pass_at_k_curve rows + set, kind, model
    frames = []
    for name, levels in (("tiny-math", (1, 2)), ("rl-pool-math", (1,))):
        for model, extra in (("sft", 0), ("rl", 1)):
            rows = [{"problem_id": f"{name}{p}", "difficulty": levels[p % len(levels)], "correct": s < 1 + extra + p % 2}
                    for p in range(6) for s in range(8)]
            frames.append(pass_at_k_curve(pd.DataFrame(rows), resamples=50).assign(set=name, kind="x", model=model))
    return pd.concat(frames, ignore_index=True)


def eval_results():  # evaluation: results_records(metrics) + the notebook's ci_low / ci_high
    summary = {"pass_at_1": 0.25, "pass_at_1_ci": [0.1, 0.4], "n_problems": 8, "samples_per_problem": 4,
               "by_difficulty": {"1": {"n_problems": 4, "pass_at_1": 0.5}, "2": {"n_problems": 4, "pass_at_1": 0.0}}}
    metrics = {"models": {m: {"benchmarks": {b: dict(summary) for b in ("tiny-math", "tiny-code")}}
                          for m in ("base", "sft")}}
    results = pd.DataFrame(results_records(metrics))
    results["ci_low"] = results.pass_at_1_ci.map(lambda ci: ci[0])
    results["ci_high"] = results.pass_at_1_ci.map(lambda ci: ci[1])
    return results


def deepconf_curves():  # deepconf.experiment curves: {(model, benchmark): frame of method x budget}
    rows = [{"method": m, "family": f, "budget": b, "accuracy": 0.3 + 0.01 * b, "ci_low": 0.2, "ci_high": 0.5,
             "accuracy_run_std": 0.0, "tokens": 100.0 * b * t, "tokens_run_std": 0.0, "no_verdict": 0}
            for m, f, t in (("pass@1", "baseline", 1.0), ("majority", "baseline", 1.0), ("deepconf-low", "online", 0.6))
            for b in (1, 2, 4)]
    return {("sft", "tiny-math"): pd.DataFrame(rows), ("rl", "tiny-math"): pd.DataFrame(rows)}


def deepconf_calibration_frames():  # deepconf.calibration: trace_table and auroc_table rows, a model column added
    from falcon_h1r_lib.deepconf import calibration
    from falcon_h1r_lib.deepconf.confidence import SCORE_NAMES

    rng = np.random.default_rng(0)
    traces, aurocs = [], []
    for label in ("sft", "rl"):
        pools = [experiment.ProblemPool(pid, rng.integers(10, 50, 8), np.zeros(8, dtype=np.int64), np.asarray(c, float),
                                        {}, {s: rng.normal(10, 1, 8) for s in SCORE_NAMES}, [])
                 for pid, c in (("p0", [1, 0] * 4), ("p1", [0] * 8))]
        t = calibration.trace_table(pools, [{"id": "p0"}, {"id": "p1"}])
        traces.append(t.assign(model=label))
        aurocs.append(calibration.auroc_table(t, resamples=20).assign(model=label))
    return pd.concat(traces, ignore_index=True), pd.concat(aurocs, ignore_index=True)


# --- the figures -----------------------------------------------------------------------------------

CASES = {  # name -> (call, axes, what to count on the first axes, at least, a required key and where it lives)
    "table8_cache_memory": (lambda: plots.table8_cache_memory(cache_memory(), "bfloat16"), 1, "lines", 2),
    "fig8_tiny_decode": (lambda: plots.fig8_tiny_decode(decode(), 4, "cpu"), 2, "lines", 2),
    "ssd_kernels": (lambda: plots.ssd_kernels(kernels()), 2, "lines", 3),
    "fig8_throughput_paper": (lambda: plots.fig8_throughput_paper(architecture.paper_fig8()[0]), None, "lines", 2),
    "fig8_throughput_vllm_cpu": (lambda: plots.fig8_throughput_vllm_cpu(*fig8_measured()), 2, "lines", 2),
    "sec2_curation_funnel": (lambda: plots.sec2_curation_funnel(funnel_02()), 2, "patches", 6),
    "fig2_response_lengths": (lambda: plots.fig2_response_lengths(lengths(), DOMAINS), 4, "patches", 1),
    "fig3_domain_mixture": (lambda: plots.fig3_domain_mixture(mixture()), 2, "patches", 8),
    "fig5_difficulty_histogram": (lambda: plots.fig5_difficulty_histogram(per_problem(), 4), 2, "patches", 3),
    "sft_loss_curves": (lambda: plots.sft_loss_curves(sft_metrics()), 2, "lines", 1),
    "sec2_sft_base_vs_sft": (lambda: plots.sec2_sft_base_vs_sft(accuracy_table()), 1, "patches", 4),
    "fig9_rl_filter_funnel": (lambda: plots.fig9_rl_filter_funnel(rl_funnel()), 1, "patches", 2),
    "fig5_rl_pass_rate_histogram": (lambda: plots.fig5_rl_pass_rate_histogram(rl_hist(), 4), 1, "patches", 10),
    "fig6_rl_training_curves": (lambda: plots.fig6_rl_training_curves(rl_curves()), 6, "lines", 2),
    "rl_headroom_pass_at_k": (lambda: plots.rl_headroom_pass_at_k(rl_headroom()), 6, "lines", 2),
    "table4_6_accuracy": (lambda: plots.table4_6_accuracy(eval_results(), ["base", "sft"], ["tiny-math", "tiny-code"]),
                          1, "patches", 4),
    "table4_by_difficulty": (lambda: plots.table4_by_difficulty(eval_results(), ["base", "sft"], "tiny-math"),
                             1, "lines", 2),
    "fig1_deepconf_scaling": (lambda: plots.fig1_deepconf_scaling(deepconf_curves()), 2, "lines", 3),
    "table7_deepconf": (lambda: plots.table7_deepconf(experiment.table7_frame(deepconf_curves(), 4), 4),
                        1, "patches", 4),
    "fig1_deepconf_decode_time": (
        lambda: plots.fig1_deepconf_decode_time(deepconf_curves(), decode(), [12, 40, 90]), 2, "lines", 4),
    "deepconf_calibration": (lambda: plots.deepconf_calibration(*deepconf_calibration_frames()), 3, "collections", 3),
}


@pytest.mark.parametrize("name", list(CASES))
def test_figure_draws_from_its_schema(name):
    call, n_axes, artists, at_least = CASES[name]
    fig = call()
    assert isinstance(fig, matplotlib.figure.Figure)
    axes = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    if n_axes is not None:
        assert len(axes) == n_axes
    assert len(getattr(axes[0], artists)) >= at_least
    fig.canvas.draw()  # every artist renders


def test_every_figure_function_is_tested():
    public = {n for n, f in vars(plots).items() if callable(f) and getattr(f, "__module__", "") == plots.__name__
              and not n.startswith("_") and n not in ("set_theme", "save_figure", "stage_colors",
                                                        "accuracy_bars_with_ci", "decode_context_for")}
    assert public == set(CASES)


def _drop(frame, column):
    return frame.drop(columns=[column])


MISSING = [  # (call with one key or column removed, the key the error must name)
    (lambda: plots.table8_cache_memory(_drop(cache_memory(), "total_GiB"), "bfloat16"), "total_GiB"),
    (lambda: plots.fig8_tiny_decode(_drop(decode(), "cache_bytes_total"), 4, "cpu"), "cache_bytes_total"),
    (lambda: plots.ssd_kernels(_drop(kernels(), "chunked_rel_err")), "chunked_rel_err"),
    (lambda: plots.fig8_throughput_paper(_drop(architecture.paper_fig8()[0], "setting")), "setting"),
    (lambda: plots.fig8_throughput_vllm_cpu(*fig8_measured()[:2], {"machine": {}, "settings": {"threads": 1}}),
     "cpu_count"),
    (lambda: plots.sec2_curation_funnel(_drop(funnel_02(), "dropped")), "dropped"),
    (lambda: plots.sec2_curation_funnel(funnel_02().iloc[:3]), "schema[trace"),
    (lambda: plots.fig2_response_lengths(_drop(lengths(), "tokens"), DOMAINS), "tokens"),
    (lambda: plots.fig3_domain_mixture(_drop(mixture(), "paper: tokens")), "paper: tokens"),
    (lambda: plots.fig5_difficulty_histogram(_drop(per_problem(), "bucket"), 4), "bucket"),
    (lambda: plots.sft_loss_curves({"pretrain": {}, "sft": {}}), "loss_log"),
    (lambda: plots.sec2_sft_base_vs_sft(_drop(accuracy_table(), "SFT CI")), "SFT CI"),
    (lambda: plots.fig9_rl_filter_funnel(_drop(rl_funnel(), "out")), "out"),
    (lambda: plots.fig5_rl_pass_rate_histogram(_drop(rl_hist(), "after filter"), 4), "after filter"),
    (lambda: plots.fig6_rl_training_curves(_drop(rl_curves(), "entropy")), "entropy"),
    (lambda: plots.rl_headroom_pass_at_k(_drop(rl_headroom(), "ci_high")), "ci_high"),
    (lambda: plots.table4_6_accuracy(_drop(eval_results(), "ci_high"), ["base"], ["tiny-math"]), "ci_high"),
    (lambda: plots.table4_by_difficulty(_drop(eval_results(), "benchmark"), ["base"], "tiny-math"), "benchmark"),
    (lambda: plots.fig1_deepconf_scaling({k: _drop(c, "ci_low") for k, c in deepconf_curves().items()}), "ci_low"),
    (lambda: plots.table7_deepconf(_drop(experiment.table7_frame(deepconf_curves(), 4), "majority_tokens"), 4),
     "majority_tokens"),
    (lambda: plots.fig1_deepconf_decode_time(deepconf_curves(), _drop(decode(), "tokens_per_s"), [12]),
     "tokens_per_s"),
    (lambda: plots.deepconf_calibration(_drop(deepconf_calibration_frames()[0], "mixed"),
                                        deepconf_calibration_frames()[1]), "mixed"),
    (lambda: plots.deepconf_calibration(deepconf_calibration_frames()[0],
                                        _drop(deepconf_calibration_frames()[1], "within_auroc")), "within_auroc"),
]


@pytest.mark.parametrize("call,key", MISSING, ids=[k for _, k in MISSING])
def test_missing_input_is_named(call, key):
    with pytest.raises(KeyError, match=key.replace("[", r"\[")):
        call()


def test_shared_ci_bars_place_one_bar_per_model_and_benchmark():
    fig = plots.accuracy_bars_with_ci(eval_results(), ["base", "sft"], ["tiny-math", "tiny-code"],
                                      plots.stage_colors(["base", "sft"]), title="t", ylim=(0, 1))
    ax = fig.axes[0]
    heights = [p.get_height() for p in ax.patches]
    assert heights == [0.25] * 4 and ax.get_ylim() == (0, 1)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["tiny-math", "tiny-code"]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["base", "sft"]


def test_headroom_panels_are_sets_by_levels_on_a_log2_axis():
    fig = plots.rl_headroom_pass_at_k(rl_headroom())
    axes = np.array(fig.axes).reshape(2, 3)  # rows: sets; columns: all, level 1, level 2
    assert [ax.get_title() for ax in axes[0]] == [
        "tiny-math\nall levels (6 problems)", "tiny-math\nlevel 1 (3 problems)", "tiny-math\nlevel 2 (3 problems)"]
    assert not axes[1][2].get_visible()  # the RL pool has no level-2 problem here
    assert axes[0][0].get_xscale() == "log" and [t.get_text() for t in axes[0][0].get_xticklabels()] == [
        "1", "2", "4", "8"]
    sft, rl = (line.get_ydata() for line in axes[0][0].lines[:2])
    assert (rl >= sft).all() and [t.get_text() for t in axes[0][0].get_legend().get_texts()] == ["sft", "rl"]


def test_save_figure_names_after_the_paper_and_writes_under_runs_not_the_tracked_figures(tmp_path, monkeypatch):
    """A run once rewrote two tracked figures that hold timings (issue 16): figures go under runs/, and only
    ``make publish`` copies them into figures/."""
    monkeypatch.setenv("FALCON_H1R_RUNS", str(tmp_path))
    fig = plots.sft_loss_curves(sft_metrics())
    assert plots.save_figure(fig, "sft_loss_curves") == tmp_path / "tiny" / "figures" / "sft_loss_curves.png"
    assert plots.save_figure(fig, "sft_loss_curves", "full") == tmp_path / "full" / "figures" / "sft_loss_curves.png"
    assert (tmp_path / "tiny" / "figures" / "sft_loss_curves.png").stat().st_size > 0
    with pytest.raises(ValueError, match="lower_snake_case"):
        plots.save_figure(fig, "Fig 8")


def test_the_deepconf_decode_time_uses_the_measured_context_that_covers_the_traces():
    """The 3D view once put DeepConf's accuracy at the decode speed measured at 4K context while its traces were
    at most 128 tokens long, where the hybrid is slower than its twin."""
    d = decode()  # contexts 256 and 1024
    assert plots.decode_context_for(d, [40, 128]) == 256
    assert plots.decode_context_for(d, [300]) == 1024
    assert plots.decode_context_for(d, [5000]) == 1024  # beyond every measurement: the longest measured
    with pytest.raises(ValueError, match="no trace lengths"):
        plots.decode_context_for(d, [])
    fig = plots.fig1_deepconf_decode_time(deepconf_curves(), d, [40, 128])
    assert "256-token context" in fig.axes[0].get_title()
