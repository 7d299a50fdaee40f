"""benchmarks/bench_model.py (its sections in benchmarks/model/): the FLOPs its roofline counts per stage (the fast
paths' own kernels too), its paired floor, and the ISA caps its caption names."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from benchmarks import common
from benchmarks.model import paired, profiling, roofline
from wavlmrawnet import WavLMRawNetConfig, WavLMRawNetForXVector
from wavlmrawnet.cpu_kernels import ONEDNN_LINEAR


def counted(fn) -> int:
    with torch.no_grad(), FlopCounterMode(display=False, custom_mapping=roofline.counted_kernels()) as counter:
        fn()
    return counter.get_total_flops()


@pytest.mark.skipif(not ONEDNN_LINEAR, reason="this torch build has no oneDNN linear kernel")
def test_onednn_linears_count_as_the_matmul_they_replace():
    x, weight, bias = torch.randn(2, 7, 16), torch.randn(24, 16), torch.randn(24)
    other = torch.randn(2, 7, 24)
    expected = 2 * 2 * 7 * 16 * 24
    assert counted(lambda: F.linear(x, weight, bias)) == expected
    assert counted(lambda: torch.ops.mkldnn._linear_pointwise(x, weight, bias, "gelu", [], "none")) == expected
    assert counted(lambda: torch.ops.mkldnn._linear_pointwise.binary(x, other, weight, None, "add")) == expected


def test_cpu_attention_kernel_counts_its_two_products():
    query, key, value = (torch.randn(1, 2, 9, 8) for _ in range(3))
    mask = torch.randn(1, 2, 9, 9)
    expected = 2 * (2 * 2 * 9 * 8 * 9)  # scores and weighted values, two heads
    assert counted(lambda: F.scaled_dot_product_attention(query, key, value, attn_mask=mask)) == expected


def test_stage_gflops_cover_the_forward_and_follow_the_fast_paths():
    torch.manual_seed(0)
    model = WavLMRawNetForXVector(WavLMRawNetConfig.from_preset("tiny")).eval()
    inputs = {"input_values": torch.randn(1, 32000), "attention_mask": torch.ones(1, 32000, dtype=torch.long)}
    off = roofline.stage_gflops(model, model, False, inputs)
    on = roofline.stage_gflops(model, model, True, inputs)
    assert model.fast_paths  # restored

    # With the fast paths off every counted FLOP is transformers' own computation, the count of `count_flops`.
    assert off["total"] == pytest.approx(common.count_flops(model, inputs)["total"] / 1e9, rel=1e-9)
    stages = [name for name in off if name != "total"]
    assert sum(off[name] for name in stages) == pytest.approx(off["total"], rel=1e-9)
    assert all(off[name] >= 0 for name in stages)

    # The fast paths do the same attention and encoder arithmetic through their own kernels (SDPA, oneDNN) ...
    for stage in ("WavLM attention (24 layers)", "WavLM feature encoder (CNN)"):
        assert on[stage] == pytest.approx(off[stage], rel=1e-9) and on[stage] > 0
    # ... less the last layer's second feed-forward product on every frame, applied once after the pooling ...
    wavlm = model.config.wavlm_config
    frames = int(model.wavlm._get_feat_extract_output_lengths(torch.tensor(32000)))
    last_product = 2 * (frames - 1) * wavlm.intermediate_size * wavlm.hidden_size / 1e9
    assert off["WavLM feed-forward"] - on["WavLM feed-forward"] == pytest.approx(last_product, rel=1e-6)
    # ... and the sinc bank by FFT, which the counter does not count.
    assert off["RawNet sinc conv"] > 0 and on["RawNet sinc conv"] == 0


def test_roofline_report_gives_each_stage_its_floor_and_share():
    stages = {"total": 200.0, "WavLM feed-forward": 150.0}
    profile = {"fused": {"total": 2500.0, "WavLM feed-forward": 1600.0},
               common.BASELINE: {"total": 2400.0, "WavLM feed-forward": 1600.0}}  # fmt: skip
    columns = {
        name: {stage: {"gflops": g, "floor_ms": 10 * g, "share": 10 * g / ms[stage]} for stage, g in stages.items()}
        for name, ms in profile.items()
    }
    report = roofline.roofline_report({"rate": 100.0, "frames": 500, "columns": columns, "precision": "fp32"}, profile)
    # 200 GFLOP at 100 GFLOP/s: 2000 ms, 0.83x the baseline's 2400 ms; the fused model at 80 % of the rate.
    assert "takes at least 2000 ms: 0.83x" in report
    assert "the fused model runs at 80 % of the rate" in report
    assert "| WavLM feed-forward | 150.0 | 1500 | 1600 | 94 % |" in report


def test_paired_floor_compares_each_round_with_its_own_rate():
    # Round 1: rate 100 -> floor 2000 ms against a 2500 ms baseline; round 2 a slower moment: rate 50 -> 4000 ms
    # against 5000 ms. Both rounds: floor / baseline 0.8, the fused model (2400 and 4800 ms) at 83 % of the rate.
    floor = roofline.paired_floor(200.0, 190.0, [100.0, 50.0], [2400.0, 4800.0], [2500.0, 5000.0])
    assert floor["floor_ratio"] == pytest.approx(0.8)
    assert floor["fused_share"] == pytest.approx(2000 / 2400)
    assert floor["baseline_share"] == pytest.approx(1900 / 2500)
    assert floor["share_needed"] == pytest.approx(0.8 / paired.TARGET_RATIO)
    report = roofline.floor_report([{"row": "default", "floor": floor}, {"row": "no WavLM"}])
    assert "**0.80x**" in report and "**94 %**" in report and "no WavLM" not in report


def test_gemm_probe_measures_a_rate_per_call():
    probe = roofline.GemmProbe(samples=2560)  # 8 frames
    probe(input_values=None)
    probe()
    assert len(probe.rates) == 2 and all(rate > 0 for rate in probe.rates)
    assert probe.rate == pytest.approx(sorted(probe.rates)[0] / 2 + sorted(probe.rates)[1] / 2)


def test_caption_names_the_isa_caps_and_an_uncapped_mkl(monkeypatch):
    for name in common.ISA_CAPS:
        monkeypatch.delenv(name, raising=False)
    assert common.isa_caps_note() == ""
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "avx2")
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    assert common.isa_caps_note().endswith("ONEDNN_MAX_CPU_ISA=AVX2 (MKL not capped)")
    monkeypatch.setenv("MKL_ENABLE_INSTRUCTIONS", "AVX2")
    note = common.isa_caps_note()
    assert "MKL_ENABLE_INSTRUCTIONS=AVX2" in note and "not capped" not in note
    assert note in common.machine_caption()


def test_profile_rows_are_one_run_each_and_count_no_time_twice():
    torch.manual_seed(0)
    model = WavLMRawNetForXVector(WavLMRawNetConfig.from_preset("tiny")).eval()
    inputs = {"input_values": torch.randn(1, 16000), "attention_mask": torch.ones(1, 16000, dtype=torch.long)}
    probe = roofline.GemmProbe(samples=2560)  # 8 frames
    columns = profiling.profile_section({"fused": (model, model, True), "off": (model, model, False)}, inputs, 3,
                                        probe=probe)  # fmt: skip
    assert len(probe.rates) == 6  # one probe before each timed run
    for row in columns.values():
        stages = {name: ms for name, ms in row.items() if name != "total"}
        assert all(ms >= 0 for ms in stages.values()), stages  # no stage holds time twice, "rest" included
        assert sum(stages.values()) == pytest.approx(row["total"])
        assert stages["WavLM attention (24 layers)"] > 0 and stages["RawNet residual blocks"] > 0
