"""Quoted paper numbers: every table has its shape, known values read back, bad files name the field."""

import copy

import pandas as pd
import pytest
import yaml

from falcon_h1r_lib.paper_results import (
    PaperResultsError,
    default_path,
    fig8_points,
    load_paper_results,
    paper_parameter,
    paper_table,
    paper_value,
    table_names,
    validate_paper_results,
)

# name -> (rows, columns) of the DataFrame; parameter tables have columns value, note.
SHAPES = {
    "table1_sft_hyperparameters": (17, 2),
    "table2_rl_hyperparameters": (14, 2),
    "table3_rl_ablation": (6, 3),
    "table4_math": (8, 5),
    "table5_code": (8, 5),
    "table6_general": (8, 4),
    "table7_deepconf": (6, 8),  # 4 benchmarks x (accuracy, tokens)
    "table8_architecture": (11, 2),
    "table9_evaluation_settings": (13, 2),
}


@pytest.fixture(scope="module")
def data():
    return load_paper_results()


def test_default_file_is_in_data_manifests():
    assert default_path().parent.name == "data_manifests" and default_path().is_file()


def test_every_table_has_its_shape_and_source(data):
    assert sorted(table_names()) == sorted(SHAPES)
    for name, shape in SHAPES.items():
        df = paper_table(name)
        assert df.shape == shape, name
        assert df.attrs["source"].startswith("[P]") and df.attrs["caption"], name
        assert not df.isna().any().any(), name


def test_model_tables_share_model_names():
    models = list(paper_table("table4_math").index)
    assert models[-1] == "Falcon-H1R-7B" and len(models) == 8
    assert list(paper_table("table5_code").index) == models == list(paper_table("table6_general").index)


def test_known_values():
    assert paper_parameter("table8_architecture", "total_parameters_billions") == 7.59
    assert paper_parameter("table8_architecture", "layers") == 44
    assert paper_parameter("table8_architecture", "vocab_size") == 130048
    assert paper_value("table7_deepconf", "Falcon-H1R-7B", "AIME24", "accuracy") == 96.7
    assert paper_value("table7_deepconf", "Falcon-H1R-7B", "AIME24", "tokens_millions") == 89.8
    assert paper_value("table7_deepconf", "Falcon-H1R-7B", "AIME25", "tokens_millions") == 95.1
    assert paper_parameter("table1_sft_hyperparameters", "learning_rate") == pytest.approx(
        1024e-6, rel=0, abs=1e-15
    )
    assert paper_parameter("table1_sft_hyperparameters", "batch_size") == 512
    assert paper_parameter("table1_sft_hyperparameters", "epochs") == 3
    assert paper_parameter("table2_rl_hyperparameters", "group_size") == 16
    assert paper_parameter("table2_rl_hyperparameters", "temperature") == 0.85
    assert paper_parameter("table2_rl_hyperparameters", "learning_rate") == pytest.approx(2e-6)
    assert (
        paper_parameter("table2_rl_hyperparameters", "clip_ratio_low"),
        paper_parameter("table2_rl_hyperparameters", "clip_ratio_high"),
    ) == (0.2, 0.28)
    assert paper_value("table3_rl_ablation", "Math only", "AIME25") == 83.1
    assert paper_value("table4_math", "Falcon-H1R-7B", "AIME24") == 88.1
    assert paper_value("table5_code", "GPT-OSS-20B", "LCB-v6") == 72.0
    assert paper_value("table6_general", "Falcon-H1R-7B", "GPQA-Diamond") == 61.3
    assert paper_value("table9_evaluation_settings", "GPQA-Diamond", "responses_per_query") == 5


def test_released_model_equals_math_only_rl_run():
    """[P] Sec. 3.4: the released model is the Math-only run, so Tables 3 and 4-6 must agree."""
    row = paper_table("table3_rl_ablation").loc["Math only"]
    assert row["AIME25"] == paper_value("table4_math", "Falcon-H1R-7B", "AIME25")
    assert row["LCB-v6"] == paper_value("table5_code", "Falcon-H1R-7B", "LCB-v6")
    assert row["GPQA-Diamond"] == paper_value("table6_general", "Falcon-H1R-7B", "GPQA-Diamond")


def test_table7_multiindex_and_parameter_frames():
    t7 = paper_table("table7_deepconf")
    assert (
        t7.columns.names == ["column", "metric"]
        and t7.loc["Falcon-H1R-7B", ("AMO-Bench-39", "accuracy")] == 35.9
    )
    t1 = paper_table("table1_sft_hyperparameters")
    assert t1.index.name == "parameter" and t1.loc["warmup_ratio", "value"] == 0.04
    with pytest.raises(KeyError, match="does not give it"):
        paper_parameter("table1_sft_hyperparameters", "packing")
    with pytest.raises(KeyError, match="no paper table"):
        paper_table("table42")
    with pytest.raises(KeyError, match="metric must be one of"):
        paper_value("table7_deepconf", "Falcon-H1R-7B", "AIME24")


def test_fig8_points():
    df = fig8_points()
    assert len(df) == 24 and set(df["model"]) == {"Falcon-H1R-7B", "Qwen3-8B"}
    assert set(df.groupby(["model", "input_len", "output_len"]).size()) == {6}
    assert sorted(set(df["batch"])) == [2, 8, 16, 32, 64, 128]
    peak = df.loc[df["tokens_per_s_per_gpu"].idxmax()]
    assert (peak["model"], peak["output_len"], peak["batch"], peak["tokens_per_s_per_gpu"]) == (
        "Falcon-H1R-7B",
        "16K",
        128,
        1760.5,
    )
    assert pd.api.types.is_float_dtype(df["tokens_per_s_per_gpu"]) and pd.api.types.is_integer_dtype(df["tp"])


def _broken(data, edit):
    bad = copy.deepcopy(data)
    edit(bad)
    return bad


@pytest.mark.parametrize(
    "edit, match",
    [
        (
            lambda d: d["tables"]["table4_math"]["rows"]["Qwen3-8B"].pop("AIME25"),
            r"tables\.table4_math\.rows\['Qwen3-8B'\]: missing column 'AIME25'",
        ),
        (
            lambda d: d["tables"]["table4_math"]["rows"]["Qwen3-8B"].update(AIME25="65.8%"),
            r"tables\.table4_math\.rows\['Qwen3-8B'\]\.AIME25: expected a number",
        ),
        (
            lambda d: d["tables"]["table7_deepconf"]["rows"]["Qwen3-8B"]["AIME24"].pop("tokens_millions"),
            r"rows\['Qwen3-8B'\]\.AIME24: missing metric 'tokens_millions'",
        ),
        (
            lambda d: d["tables"]["table1_sft_hyperparameters"].pop("source"),
            r"tables\.table1_sft_hyperparameters: missing key 'source'",
        ),
        (
            lambda d: d["tables"]["table1_sft_hyperparameters"]["notes"].update(lr="x"),
            r"tables\.table1_sft_hyperparameters\.notes\.lr: note for an unknown parameter",
        ),
        (
            lambda d: d["tables"]["table2_rl_hyperparameters"].update(kind="table"),
            r"tables\.table2_rl_hyperparameters\.kind",
        ),
        (
            lambda d: d["tables"]["table5_code"]["cell_notes"][0].update(column="SWE"),
            r"tables\.table5_code\.cell_notes\[0\]\.column: unknown column 'SWE'",
        ),
        (
            lambda d: d["figures"]["fig8_throughput"]["points"][3].update(batch="32"),
            r"figures\.fig8_throughput\.points\[3\]\.batch: expected int",
        ),
        (
            lambda d: d["figures"]["fig8_throughput"]["points"][0].update(gpu="H100"),
            r"figures\.fig8_throughput\.points\[0\]: unknown field 'gpu'",
        ),
        (lambda d: d.update(schema_version=2), r"schema_version: expected 1"),
    ],
)
def test_malformed_input_names_the_field(data, edit, match):
    with pytest.raises(PaperResultsError, match=match):
        validate_paper_results(_broken(data, edit))


def test_malformed_file_names_the_file(data, tmp_path):
    bad = _broken(data, lambda d: d["tables"]["table8_architecture"]["values"].update(layers=None))
    path = tmp_path / "paper_results.yaml"
    path.write_text(yaml.safe_dump(bad))
    with pytest.raises(PaperResultsError, match=rf"{path}: tables\.table8_architecture\.values\.layers"):
        load_paper_results(path)
    path.write_text("tables: [unclosed")
    with pytest.raises(PaperResultsError, match="not valid YAML"):
        load_paper_results(path)
    with pytest.raises(FileNotFoundError):
        load_paper_results(tmp_path / "nope.yaml")


def test_fig3_mixture_shares_sum_to_one():
    from falcon_h1r_lib.paper_results import figure_points

    df = figure_points("fig3_sft_mixture")
    assert list(df.domain) == ["math", "code", "science", "other"]
    assert abs(df.token_share.sum() - 1.0) < 0.01 and abs(df.sample_share.sum() - 1.0) < 0.01
    assert df.set_index("domain").loc["math", "token_share"] == 0.568
    with pytest.raises(ValueError, match="no figure"):
        figure_points("fig99")
