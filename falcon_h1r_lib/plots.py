"""Every figure of the notebooks, one function per figure, drawn from measured files; the shared style.

Figures are written only by code, only from measured or quoted files (never drawn by hand): each function takes a
metrics dict or a frame built from one and returns the Figure; the notebook shows it and saves it with
``save_figure`` under the paper figure or table it mirrors, e.g. ``fig8_throughput`` or ``table7_deepconf``.

No backend is chosen here: a Jupyter kernel keeps its inline backend (figures inline in JupyterLab and in the
notebooks papermill executes), and a script without a display falls back to Agg by matplotlib's own rules.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from falcon_h1r_lib.paths import runs_dir

OURS = "#1f77b4"  # measured by this repository
PAPER = "#7f7f7f"  # quoted from the paper
HYBRID = "#d62728"  # Falcon-H1 hybrid
TRANSFORMER = "#2ca02c"  # Transformer comparison model
MAJORITY = "#9467bd"  # majority voting (DeepConf's same-budget baseline)
CONSENSUS = "#ff7f0e"  # DeepConf with the consensus stop
STAGE_COLORS = (PAPER, OURS, HYBRID, TRANSFORMER)  # checkpoints in pipeline order: base, SFT, RL, ...
FIG6_PANELS = (("reward", "mean reward"), ("accuracy", "verified-correct fraction"),
               ("response_length", "response length (tokens)"), ("entropy", "entropy (nats / token)"),
               ("clip_fraction", "clip fraction"), ("zero_std_fraction", "zero-advantage groups"))
_NAME = re.compile(r"^[a-z0-9][a-z0-9_]*$")


def set_theme() -> None:
    """Seaborn's whitegrid with sizes that read well in JupyterLab and in the README."""
    sns.set_theme(style="whitegrid", context="notebook", font_scale=0.95)
    plt.rcParams.update({"figure.dpi": 100, "savefig.dpi": 150, "savefig.bbox": "tight"})


def save_figure(fig: plt.Figure, name: str, profile: str = "tiny") -> Path:
    """Save ``fig`` as ``runs/<profile>/figures/<name>.png`` and return the path. A run never writes the tracked
    ``figures/`` (some figures hold timings that change every run): ``make publish`` copies a finished tiny run's
    figures there, with its notebooks. Raises ValueError for a name that is not lower_snake_case."""
    if not _NAME.match(name):
        raise ValueError(f"figure name {name!r}: use lower_snake_case named after the paper figure/table")
    folder = runs_dir(profile) / "figures"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    # no timestamp metadata, so re-running does not churn the committed files for nothing
    fig.savefig(path, metadata={"Software": None})
    return path


def _need(data: Any, keys: Iterable[str], figure: str) -> None:
    """Fail naming the first key (dict) or column (frame) a figure needs and its input lacks."""
    have = data.columns if isinstance(data, pd.DataFrame) else data
    for key in keys:
        if key not in have:
            raise KeyError(f"{figure}: input has no {key!r} (needs {list(keys)})")


# --------------------------------------------------------------------------------------------
# Shared: grouped bars with bootstrap intervals (notebooks 03 and 05)
# --------------------------------------------------------------------------------------------


def accuracy_bars_with_ci(frame: pd.DataFrame, models: Sequence[str], benchmarks: Sequence[str],
                          colors: Mapping[str, str], *, title: str, ylabel: str = "pass@1",
                          ylim: tuple[float, float] | None = None, figsize: tuple[float, float] = (9, 3.8)
                          ) -> plt.Figure:
    """pass@1 per benchmark, one bar per model side by side, with its CI; ``frame`` has one row per
    (model, benchmark) and the columns model, benchmark, pass_at_1, ci_low, ci_high."""
    _need(frame, ("model", "benchmark", "pass_at_1", "ci_low", "ci_high"), "accuracy_bars_with_ci")
    fig, ax = plt.subplots(figsize=figsize)
    width = 0.8 / len(models)
    for i, label in enumerate(models):
        sub = frame[frame.model == label].set_index("benchmark").reindex(benchmarks)
        x = np.arange(len(benchmarks)) + i * width
        err = np.vstack([sub.pass_at_1 - sub.ci_low, sub.ci_high - sub.pass_at_1])
        ax.bar(x, sub.pass_at_1, width, yerr=err, capsize=3, label=label, color=colors[label])
    ax.set_xticks(np.arange(len(benchmarks)) + width * (len(models) - 1) / 2, benchmarks)
    ax.set(ylabel=ylabel, title=title)
    if ylim is not None:
        ax.set_ylim(ylim)
    ax.legend()
    return fig


# --------------------------------------------------------------------------------------------
# Notebook 01: architecture
# --------------------------------------------------------------------------------------------


def table8_cache_memory(mem: pd.DataFrame, kv_dtype: str) -> plt.Figure:
    """Analytic decode cache per sequence vs context, Falcon-H1R-7B vs Qwen3-8B (``cache_memory_table`` rows)."""
    _need(mem, ("model", "context_len", "total_GiB"), "table8_cache_memory")
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for name, color in (("Falcon-H1R-7B", HYBRID), ("Qwen3-8B", TRANSFORMER)):
        sub = mem[mem.model == name]
        ax.plot(sub.context_len, sub.total_GiB, marker="o", color=color, label=name)
    ax.set(xscale="log", yscale="log", xlabel="context length (tokens)", ylabel="decode cache per sequence (GiB)",
           title=f"Cache memory vs context (analytic, KV in {kv_dtype}, SSM state fp32)")
    ax.legend()
    return fig


def fig8_tiny_decode(decode: pd.DataFrame, batch: int, device: str) -> plt.Figure:
    """Measured cache and decode tokens/s vs context, tiny hybrid vs twin (notebook 01's ``decode`` records)."""
    _need(decode, ("model", "context_len", "cache_bytes_total", "tokens_per_s"), "fig8_tiny_decode")
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for name, color in (("tiny hybrid", HYBRID), ("tiny twin", TRANSFORMER)):
        sub = decode[decode.model == name]
        axes[0].plot(sub.context_len, sub.cache_bytes_total / 2**20, marker="o", color=color, label=name)
        axes[1].plot(sub.context_len, sub.tokens_per_s, marker="o", color=color, label=name)
    axes[0].set(xlabel="context length (tokens)", ylabel="measured cache (MiB)", title=f"Cache, batch {batch}")
    axes[1].set(xlabel="context length (tokens)", ylabel="decode tokens/s",
                title=f"Decode throughput on {device} (batch {batch})")
    for ax in axes:
        ax.set_xscale("log", base=2)
        ax.legend()
    return fig


def ssd_kernels(kernels: pd.DataFrame) -> plt.Figure:
    """SSD scan tokens/s of the three implementations and the chunked scan's error (``kernels.bench`` rows)."""
    _need(kernels, ("length", "sequential_tok_s", "chunked_tok_s", "transformers_tok_s", "chunked_rel_err"),
          "ssd_kernels")
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for col, label, color in (("sequential_tok_s", "sequential", PAPER), ("chunked_tok_s", "chunked (ours)", OURS),
                              ("transformers_tok_s", "transformers torch path", TRANSFORMER)):
        axes[0].plot(kernels.length, kernels[col], marker="o", label=label, color=color)
    axes[0].set(xscale="log", yscale="log", xlabel="sequence length", ylabel="tokens/s", title="SSD scan throughput")
    axes[0].legend()
    axes[1].bar(kernels.length.astype(str), kernels.chunked_rel_err.clip(lower=1e-12), color=OURS)
    axes[1].set(yscale="log", xlabel="sequence length", ylabel="max |y - y_seq| / max |y_seq|",
                title="chunked vs sequential (fp32)")
    return fig


def fig8_throughput_paper(points: pd.DataFrame) -> plt.Figure:
    """Paper Fig. 8 as published: tokens/s per GPU vs batch, one panel per setting (``fig8_points`` + setting)."""
    _need(points, ("setting", "model", "batch", "tokens_per_s_per_gpu"), "fig8_throughput_paper")
    settings = list(dict.fromkeys(points["setting"]))
    fig, axes = plt.subplots(1, len(settings), figsize=(5 * len(settings), 4), sharey=True, squeeze=False)
    for ax, setting in zip(axes[0], settings):
        sub = points[points.setting == setting]
        for name, color in (("Falcon-H1R-7B", HYBRID), ("Qwen3-8B", TRANSFORMER)):
            s = sub[sub.model == name].sort_values("batch")
            ax.plot(s.batch, s.tokens_per_s_per_gpu, marker="o", color=color, label=name)
        ax.set(xscale="log", xlabel="batch size", title=setting)
        ax.set_xscale("log", base=2)
    axes[0][0].set_ylabel("tokens/s per GPU (H100, vLLM)")
    axes[0][0].legend()
    fig.suptitle("Paper Fig. 8 (quoted numbers)")
    return fig


def fig8_throughput_vllm_cpu(table: pd.DataFrame, paper_gain: pd.DataFrame, record: Mapping[str, Any]
                             ) -> plt.Figure:
    """Fig. 8 measured on vLLM-CPU (``fig8_vs_paper`` rows) beside the paper's ratio at its 512-token setting
    (``paper_gain``: indexed by setting and batch); ``record`` is the fig8_vllm.json the table came from."""
    _need(table, ("output_len", "batch", "hybrid_tok_s", "twin_tok_s", "hybrid_over_twin"), "fig8_throughput_vllm_cpu")
    _need(paper_gain, ("falcon_over_qwen3",), "fig8_throughput_vllm_cpu")
    _need(record, ("machine", "settings"), "fig8_throughput_vllm_cpu")
    _need(record["machine"], ("cpu_count",), "fig8_throughput_vllm_cpu")
    _need(record["settings"], ("threads",), "fig8_throughput_vllm_cpu")
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for n, sub in table.groupby("output_len"):
        axes[0].plot(sub.batch, sub.hybrid_tok_s, marker="o", color=HYBRID, label=f"tiny hybrid, {n} out")
        axes[0].plot(sub.batch, sub.twin_tok_s, marker="s", ls="--", color=TRANSFORMER, label=f"tiny twin, {n} out")
        axes[1].plot(sub.batch, sub.hybrid_over_twin, marker="o", color=OURS, label=f"tiny hybrid / twin, {n} out")
    paper_512 = paper_gain.loc[paper_gain.index.get_level_values("setting").str.startswith("512 ")]
    axes[1].plot(paper_512.index.get_level_values("batch"), paper_512.falcon_over_qwen3, marker="^", color=PAPER,
                 label="paper: Falcon-H1R-7B / Qwen3-8B, 512 in -> 32K out (H100)")
    axes[1].axhline(1.0, color="black", lw=0.8)
    axes[0].set(xlabel="batch size", ylabel="generated tokens/s",
                title=f"vLLM-CPU, {record['machine']['cpu_count']} cores, "
                      f"worker threads {record['settings']['threads'] or 'auto'}")
    axes[1].set(xlabel="batch size", ylabel="throughput ratio", title="hybrid / Transformer")
    for ax in axes:
        ax.set_xscale("log", base=2)
        ax.legend(fontsize=8)
    return fig


# --------------------------------------------------------------------------------------------
# Notebook 02: data curation
# --------------------------------------------------------------------------------------------


def sec2_curation_funnel(funnel: pd.DataFrame) -> plt.Figure:
    """Kept and dropped rows per curation step, problem-level steps left and trace-level steps right
    (``metrics["funnel"]`` of notebook 02 as a frame; the trace steps start at ``schema[trace...``)."""
    _need(funnel, ("step", "out", "dropped"), "sec2_curation_funnel")
    starts = funnel.index[funnel.step.str.startswith("schema[trace")]
    if not len(starts):
        raise KeyError("sec2_curation_funnel: input has no step starting with 'schema[trace'")
    trace_start = starts[0]
    fig, axes = plt.subplots(1, 2, figsize=(13, 3.8), gridspec_kw={"wspace": 0.45})
    for ax, part, what in ((axes[0], funnel.loc[: trace_start - 1], "problems"),
                           (axes[1], funnel.loc[trace_start:], "traces")):
        ax.barh(part["step"][::-1], part["out"][::-1], color=OURS, label="kept")
        ax.barh(part["step"][::-1], part["dropped"][::-1], left=part["out"][::-1], color="#cccccc", label="dropped")
        ax.set(xlabel=what, title=f"{what[:-1].capitalize()}-level steps")
    axes[1].legend(loc="lower right")
    fig.suptitle("Curation funnel (tiny task world)")
    return fig


def fig2_response_lengths(lengths: pd.DataFrame, domains: Sequence[str]) -> plt.Figure:
    """Histogram of response tokens per domain on log bins (one row per curated SFT trace)."""
    _need(lengths, ("domain", "tokens"), "fig2_response_lengths")
    fig, axes = plt.subplots(1, len(domains), figsize=(14, 3.2), sharey=False)
    for ax, domain in zip(axes, domains):
        sub = lengths[lengths.domain == domain]
        if len(sub):
            sns.histplot(sub.tokens, bins=np.geomspace(max(sub.tokens.min(), 1), sub.tokens.max() + 1, 20), ax=ax,
                         color=OURS)
        ax.set(xscale="log", title=f"{domain} (n={len(sub)})", xlabel="response tokens")
    fig.suptitle("Response length per domain after curation (paper Fig. 2 analog)", y=1.04)
    return fig


def fig3_domain_mixture(mix: pd.DataFrame) -> plt.Figure:
    """Sample and token shares per domain, ours beside paper Fig. 3 (columns ``ours: samples`` ...)."""
    _need(mix, ("ours: samples", "paper: samples", "ours: tokens", "paper: tokens"), "fig3_domain_mixture")
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5), sharey=True)
    for ax, what in zip(axes, ("samples", "tokens")):
        mix[[f"ours: {what}", f"paper: {what}"]].plot.bar(ax=ax, color=[OURS, PAPER], rot=0)
        ax.set(title=f"share of {what}", ylabel="share")
    fig.suptitle("SFT mixture, ours (tiny) vs paper Fig. 3")
    return fig


def fig5_difficulty_histogram(per_problem: pd.DataFrame, rollouts_per_problem: int) -> plt.Figure:
    """Correct teacher rollouts per SFT problem stacked by difficulty bucket, and pass rate per generator level."""
    _need(per_problem, ("pass_rate", "bucket", "level"), "fig5_difficulty_histogram")
    data = per_problem.assign(correct_of_k=(per_problem.pass_rate * rollouts_per_problem).round().astype(int))
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.5))
    sns.histplot(data=data, x="correct_of_k", hue="bucket", multiple="stack", discrete=True, ax=axes[0],
                 palette={"hard": HYBRID, "medium": OURS, "easy": PAPER})
    axes[0].set(xlabel=f"correct teacher rollouts out of {rollouts_per_problem}", ylabel="SFT problems",
                title="Difficulty histogram")
    sns.boxplot(data=data, x="level", y="pass_rate", ax=axes[1], color=OURS)
    axes[1].set(title="pass rate by generator level")
    return fig


# --------------------------------------------------------------------------------------------
# Notebook 03: SFT
# --------------------------------------------------------------------------------------------


def sft_loss_curves(metrics: Mapping[str, Any]) -> plt.Figure:
    """Training loss of tiny pretraining and of SFT per optimizer step (notebook 03's metrics)."""
    _need(metrics, ("pretrain", "sft"), "sft_loss_curves")
    _need(metrics["sft"], ("loss_log",), "sft_loss_curves")
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.4))
    for ax, (name, log) in zip(axes, (("tiny base pretraining", metrics["pretrain"].get("loss_log", [])),
                                      ("SFT", metrics["sft"]["loss_log"]))):
        steps, losses = [e["step"] for e in log], [e["loss"] for e in log]
        ax.plot(steps, losses, color=OURS, marker=".")
        ax.set(title=name, xlabel="optimizer step", ylabel="training loss", yscale="log")
    return fig


def sec2_sft_base_vs_sft(table: pd.DataFrame) -> plt.Figure:
    """Base vs SFT pass@1 per benchmark with CIs (``sft.accuracy_table``: indexed by benchmark)."""
    _need(table, ("base pass@1", "base CI", "SFT pass@1", "SFT CI"), "sec2_sft_base_vs_sft")
    rows = [{"model": who, "benchmark": bench, "pass_at_1": float(r[f"{who} pass@1"]),
             "ci_low": r[f"{who} CI"][0], "ci_high": r[f"{who} CI"][1]}
            for who in ("base", "SFT") for bench, r in table.iterrows()]
    return accuracy_bars_with_ci(pd.DataFrame(rows), ["base", "SFT"], list(table.index),
                                 {"base": PAPER, "SFT": OURS}, ylabel="pass@1 (95% CI)",
                                 title="Tiny base vs SFT (4 samples/problem, T=0.6, top-p 0.95)", figsize=(8, 3.4))


# --------------------------------------------------------------------------------------------
# Notebook 04: RL
# --------------------------------------------------------------------------------------------


def fig9_rl_filter_funnel(funnel: pd.DataFrame) -> plt.Figure:
    """Problems left after each RL-data step, the Fig. 9 filter last (``metrics["data"]["funnel"]`` by step)."""
    _need(funnel, ("out",), "fig9_rl_filter_funnel")
    fig, ax = plt.subplots(figsize=(7, 3))
    ax.barh(funnel.index[::-1], funnel["out"][::-1], color=OURS)
    ax.set_xlabel("problems left after the step")
    ax.set_title("RL data funnel (Fig. 9 rules at the end)")
    return fig


def fig5_rl_pass_rate_histogram(hist: pd.DataFrame, k: int) -> plt.Figure:
    """Problems per SFT-model pass rate c/k before and after the Fig. 9 filter (symlog counts)."""
    _need(hist, ("before filter", "after filter"), "fig5_rl_pass_rate_histogram")
    fig, ax = plt.subplots(figsize=(7, 3))
    hist[["before filter", "after filter"]].plot.bar(ax=ax, color=[PAPER, OURS], rot=0)
    ax.set_xlabel(f"SFT-model pass rate (c / k, k = {k})")
    ax.set_ylabel("problems")
    ax.set_yscale("symlog")
    return fig


def fig6_rl_training_curves(curves: pd.DataFrame) -> plt.Figure:
    """The Fig. 6 quantities per RL step (raw and 5-step rolling mean); ``curves`` is indexed by step."""
    _need(curves, [col for col, _ in FIG6_PANELS], "fig6_rl_training_curves")
    fig, axes = plt.subplots(2, 3, figsize=(11, 5), sharex=True)
    for ax, (col, title) in zip(axes.flat, FIG6_PANELS):
        ax.plot(curves.index, curves[col], color=OURS, alpha=0.35)
        ax.plot(curves.index, curves[col].rolling(5, min_periods=1).mean(), color=OURS)
        ax.set_title(title)
    for ax in axes[1]:
        ax.set_xlabel("RL step")
    return fig


def rl_headroom_pass_at_k(curves: pd.DataFrame, models: Sequence[str] = ("sft", "rl")) -> plt.Figure:
    """pass@k against k (log2 axis) with bootstrap CI bands, one line per model (SFT blue, RL red), one panel per
    problem set (rows: held-out, RL pool) and level (columns: "all" first); a set without a level leaves its panel
    blank. ``curves``: ``rl.report.headroom_tables``'s first frame (set, model, group, k, pass_at_k, ci_low, ci_high,
    n_problems; ``evaluation.headroom.pass_at_k_curve`` rows)."""
    _need(curves, ("set", "model", "group", "k", "pass_at_k", "ci_low", "ci_high", "n_problems"),
          "rl_headroom_pass_at_k")
    sets = list(dict.fromkeys(curves["set"]))
    groups = sorted(dict.fromkeys(curves["group"].astype(str)),
                    key=lambda g: (g != "all", int(g) if g.isdigit() else 0, g))
    colors = dict(zip(models, STAGE_COLORS[1:]))
    fig, axes = plt.subplots(len(sets), len(groups), figsize=(2.5 * len(groups) + 0.5, 3.0 * len(sets)),
                             sharey=True, squeeze=False)
    for row, name in zip(axes, sets):
        for ax, group in zip(row, groups):
            sub = curves[(curves["set"] == name) & (curves["group"].astype(str) == group)]
            if sub.empty:
                ax.set_visible(False)
                continue
            for label in models:
                m = sub[sub["model"] == label].sort_values("k")
                ax.plot(m["k"], m["pass_at_k"], marker="o", ms=3, color=colors[label], label=label)
                ax.fill_between(m["k"], m["ci_low"], m["ci_high"], color=colors[label], alpha=0.2, lw=0)
            ks = sorted(int(k) for k in sub["k"].unique())
            ax.set_xscale("log", base=2)
            ax.set_xticks(ks, [str(k) for k in ks], fontsize=8)
            ax.set(ylim=(0, 1), xlabel="k (samples)")
            level = "all levels" if group == "all" else f"level {group}"
            ax.set_title(f"{name}\n{level} ({int(sub['n_problems'].iloc[0])} problems)", fontsize=9)
        row[0].set_ylabel("pass@k")
    axes[0][0].legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------------------------
# Notebook 05: evaluation
# --------------------------------------------------------------------------------------------


def stage_colors(models: Sequence[str]) -> dict[str, str]:
    """One color per checkpoint label, in pipeline order (base grey, SFT blue, RL red)."""
    return dict(zip(models, STAGE_COLORS))


def table4_6_accuracy(results: pd.DataFrame, models: Sequence[str], benchmarks: Sequence[str]) -> plt.Figure:
    """Held-out pass@1 per benchmark and checkpoint with CIs (``results_records`` + ci_low / ci_high)."""
    return accuracy_bars_with_ci(results, models, benchmarks, stage_colors(models), ylim=(0, 1),
                                 title="Held-out accuracy per domain and stage (tiny, 95% CI)")


def table4_by_difficulty(results: pd.DataFrame, models: Sequence[str], benchmark: str) -> plt.Figure:
    """pass@1 per difficulty level on one benchmark, one line per checkpoint (its ``by_difficulty`` summary)."""
    _need(results, ("model", "benchmark"), "table4_by_difficulty")
    colors = stage_colors(models)
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for label in models:
        row = results[(results.model == label) & (results.benchmark == benchmark)]
        if len(row) and isinstance(row.iloc[0].get("by_difficulty"), dict):
            by = row.iloc[0]["by_difficulty"]
            levels = sorted(by, key=int)
            ax.plot([int(lv) for lv in levels], [by[lv]["pass_at_1"] for lv in levels], marker="o", label=label,
                    color=colors[label])
    ax.set(xlabel="difficulty level", ylabel="pass@1", ylim=(0, 1), title=f"{benchmark} by difficulty")
    ax.legend()
    return fig


# --------------------------------------------------------------------------------------------
# Notebook 06: DeepConf
# --------------------------------------------------------------------------------------------

FIG1_METHODS = {"pass@1": PAPER, "majority": MAJORITY, "deepconf-low": HYBRID, "deepconf-high": OURS,
                "deepconf-low+consensus": CONSENSUS, "offline:lowest_group@10": TRANSFORMER}


def _curve_columns(curves: Mapping[tuple[str, str], pd.DataFrame], figure: str) -> None:
    if not curves:
        raise KeyError(f"{figure}: no (model, benchmark) curves")
    for c in curves.values():
        _need(c, ("method", "budget", "tokens", "accuracy", "ci_low", "ci_high"), figure)


def fig1_deepconf_scaling(curves: Mapping[tuple[str, str], pd.DataFrame]) -> plt.Figure:
    """Accuracy vs generated tokens per method with bootstrap CIs, one panel per (model, benchmark)."""
    _curve_columns(curves, "fig1_deepconf_scaling")
    fig, axes = plt.subplots(1, len(curves), figsize=(6 * len(curves), 4), squeeze=False)
    for ax, ((label, bench), c) in zip(axes[0], curves.items()):
        for method, color in FIG1_METHODS.items():
            sub = c[c.method == method].sort_values("budget")
            if len(sub):
                ax.errorbar(sub.tokens, sub.accuracy, yerr=[sub.accuracy - sub.ci_low, sub.ci_high - sub.accuracy],
                            marker="o", ms=3, capsize=2, color=color, label=method)
        ax.set(xscale="log", xlabel="generated tokens (all problems)", ylabel="accuracy", title=f"{label} on {bench}")
    axes[0][0].legend(fontsize=8)
    return fig


def table7_deepconf(t7: pd.DataFrame, budget: int) -> plt.Figure:
    """Tokens of majority@K and DeepConf-low@K per (model, benchmark), accuracies as labels (``table7_frame``)."""
    _need(t7, ("model", "benchmark", "tokens", "accuracy_percent", "majority_tokens", "majority_accuracy_percent"),
          "table7_deepconf")
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    x = np.arange(len(t7))
    ax.bar(x - 0.2, t7.majority_tokens, 0.4, color=MAJORITY, label=f"majority@{budget}")
    ax.bar(x + 0.2, t7.tokens, 0.4, color=HYBRID, label=f"DeepConf-low@{budget}")
    for i, r in t7.iterrows():
        ax.text(i - 0.2, r.majority_tokens, f"{r.majority_accuracy_percent:.0f}%", ha="center", va="bottom", fontsize=8)
        ax.text(i + 0.2, r.tokens, f"{r.accuracy_percent:.0f}%", ha="center", va="bottom", fontsize=8)
    ax.set_xticks(x, [f"{m}\n{b}" for m, b in zip(t7.model, t7.benchmark)])
    ax.set(ylabel="total generated tokens", title="Table 7 analog: tokens (bars) and accuracy (labels)")
    ax.legend(fontsize=8)
    return fig


def decode_context_for(decode: pd.DataFrame, trace_tokens: Sequence[int]) -> int:
    """The measured decode context (``decode.context_len``) that covers the longest trace: the shortest one >= the
    longest of ``trace_tokens`` (generated tokens per trace), else the longest measured. Raises ValueError for no
    traces."""
    if len(trace_tokens) == 0:
        raise ValueError("decode_context_for: no trace lengths")
    contexts = np.sort(decode["context_len"].unique())
    covering = contexts[contexts >= max(trace_tokens)]
    return int(covering[0] if len(covering) else contexts[-1])


def fig1_deepconf_decode_time(curves: Mapping[tuple[str, str], pd.DataFrame], decode: pd.DataFrame,
                              trace_tokens: Sequence[int]) -> plt.Figure:
    """The paper's accuracy x tokens x throughput view, from measured pairs only. Left: accuracy of majority@K and
    DeepConf-low against the decode time of their tokens, per (model, benchmark) curve, at the tiny hybrid's
    tokens/s measured at the context that covers the traces (`decode_context_for`), K labelled on each point.
    Right: decode tokens/s of the tiny hybrid and its Transformer twin against context length (notebook 01's
    ``decode`` rows), the traces' lengths marked: the hybrid's advantage is a long-context one ([P] Fig. 8), and it
    applies only where the traces reach. ``trace_tokens``: generated tokens per trace of the pools."""
    _curve_columns(curves, "fig1_deepconf_decode_time")
    _need(decode, ("model", "context_len", "tokens_per_s"), "fig1_deepconf_decode_time")
    context = decode_context_for(decode, trace_tokens)
    speed = decode[decode.context_len == context].set_index("model").tokens_per_s
    fig, (ax, ax_speed) = plt.subplots(1, 2, figsize=(11, 4))
    colors = {key: STAGE_COLORS[1 + i % (len(STAGE_COLORS) - 1)] for i, key in enumerate(curves)}
    for key, c in curves.items():
        for method, marker, ls in (("majority", "o", "--"), ("deepconf-low", "^", "-")):
            sub = c[c.method == method].sort_values("budget")
            seconds = sub.tokens / speed["tiny hybrid"]
            ax.plot(seconds, sub.accuracy, marker=marker, ls=ls, color=colors[key], label=f"{'/'.join(key)}, {method}")
            for x, y, k in zip(seconds, sub.accuracy, sub.budget):
                ax.annotate(f"K={k}", (x, y), fontsize=6, xytext=(2, 2), textcoords="offset points")
    ax.set(xscale="log", xlabel=f"decode time of all tokens (s) at {speed['tiny hybrid']:.0f} tok/s",
           ylabel="accuracy", title=f"tiny hybrid, decode measured at a {context}-token context")
    ax.legend(fontsize=7)
    for model_name, color in (("tiny hybrid", HYBRID), ("tiny twin", TRANSFORMER)):
        d = decode[decode.model == model_name].sort_values("context_len")
        ax_speed.plot(d.context_len, d.tokens_per_s, marker="o", color=color, label=model_name)
    lengths = np.asarray(trace_tokens)
    ax_speed.axvspan(max(1, lengths.min()), lengths.max(), color=PAPER, alpha=0.2,
                     label=f"DeepConf traces: {lengths.min()}-{lengths.max()} tokens (median {np.median(lengths):.0f})")
    ax_speed.set(xscale="log", xlabel="context length (tokens)", ylabel="decode tokens/s (notebook 01)",
                 title="where the hybrid's decode advantage applies")
    ax_speed.legend(fontsize=7)
    return fig


def deepconf_calibration(traces: pd.DataFrame, auroc: pd.DataFrame, measure: str = "lowest_group") -> plt.Figure:
    """Does confidence separate correct from wrong traces? One panel per model: ``measure`` against trace length,
    correct traces, wrong traces of problems some trace solved ("mixed": where confidence can decide a vote) and
    wrong traces of unsolved problems apart; and a last panel: within-problem AUROC per measure and model with its
    bootstrap CI (bars), the pooled AUROC (dots) and chance (0.5). ``traces``: ``deepconf.calibration.trace_table``
    rows with a ``model`` column; ``auroc``: ``calibration.auroc_table`` rows with a ``model`` column."""
    _need(traces, ("model", "n_tokens", "correct", "mixed", measure), "deepconf_calibration")
    _need(auroc, ("model", "measure", "pooled_auroc", "within_auroc", "ci_low", "ci_high", "n_problems"),
          "deepconf_calibration")
    models = list(dict.fromkeys(traces["model"]))
    colors = {label: STAGE_COLORS[1 + i % (len(STAGE_COLORS) - 1)] for i, label in enumerate(models)}
    fig, axes = plt.subplots(1, len(models) + 1, figsize=(4.2 * (len(models) + 1), 3.8), squeeze=False)
    for ax, label in zip(axes[0], models):
        t = traces[traces["model"] == label]
        for name, sub, color, alpha in (
                ("wrong, unsolved problem", t[(t["correct"] == 0) & ~t["mixed"].astype(bool)], PAPER, 0.25),
                ("wrong, mixed problem", t[(t["correct"] == 0) & t["mixed"].astype(bool)], HYBRID, 0.5),
                ("correct", t[t["correct"] == 1], OURS, 0.7)):
            ax.scatter(sub["n_tokens"], sub[measure], s=9, color=color, alpha=alpha, lw=0, label=f"{name} ({len(sub)})")
        ax.set(xlabel="trace length (tokens)", ylabel=f"{measure} confidence", title=f"{label}: confidence vs length")
        ax.legend(fontsize=7)
    ax = axes[0][-1]
    measures = list(dict.fromkeys(auroc["measure"]))
    width = 0.8 / len(models)
    for i, label in enumerate(models):
        a = auroc[auroc["model"] == label].set_index("measure").reindex(measures)
        x = np.arange(len(measures)) + (i - (len(models) - 1) / 2) * width
        ax.bar(x, a["within_auroc"], width, color=colors[label], alpha=0.85,
               label=f"{label}: within-problem ({int(a['n_problems'].max())} problems)")
        ax.errorbar(x, a["within_auroc"], yerr=[a["within_auroc"] - a["ci_low"], a["ci_high"] - a["within_auroc"]],
                    fmt="none", ecolor="black", capsize=2, lw=0.8)
        ax.scatter(x, a["pooled_auroc"], color="black", marker="D", s=14, zorder=3,
                   label="pooled over problems" if i == 0 else None)
    ax.axhline(0.5, color=PAPER, ls="--", lw=1)
    ax.set_xticks(np.arange(len(measures)), measures, rotation=20, fontsize=8)
    ax.set(ylim=(0, 1.25), ylabel="AUROC (correct vs wrong)", title="AUROC per measure (length: shorter = confident)")
    ax.set_yticks(np.linspace(0, 1, 6))
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    return fig
