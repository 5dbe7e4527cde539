"""Language-model pieces on their own: quality measures (pure numpy) and the weight-only candidates."""

import numpy as np
import onnx
import pytest

from serving.llm.decoder import Decoder
from workers.ml.evaluate import Measurement
from workers.ml.llm import quality
from workers.ml.llm.candidates import NotApplicable, quantize, recipe_of
from workers.ml.llm.evaluate import model_size
from workers.ml.llm.timing import time_decoders
from workers.ml.policy import CompressionPolicy, budget_violation


def test_greedy_agreement_counts_exact_matches_and_where_each_continuation_first_differs():
    found = quality.agreement([[1, 2, 3], [1, 2, 3], [4, 5]], [[1, 2, 3], [1, 9, 3], [7, 5]])
    assert found == quality.Agreement(exact_match=1 / 3, first_divergence_mean=(3 + 1 + 0) / 3,
                                      first_divergence_min=0)


def test_kl_divergence_is_zero_for_the_same_logits_and_grows_with_the_difference():
    logits = np.array([[2.0, 1.0, 0.0], [0.0, 0.0, 3.0]])
    assert quality.mean_kl([logits], [logits]) == pytest.approx(0)
    near = quality.mean_kl([logits], [logits + np.array([[0.1, 0, 0], [0, 0, 0]])])
    far = quality.mean_kl([logits], [logits[:, ::-1]])
    assert 0 < near < far
    p = np.exp(logits[1]) / np.exp(logits[1]).sum()
    q = np.exp(logits[1, ::-1]) / np.exp(logits[1, ::-1]).sum()
    first = np.exp(logits[0]) / np.exp(logits[0]).sum()
    second = np.exp(logits[0, ::-1]) / np.exp(logits[0, ::-1]).sum()
    assert far == pytest.approx(((first * np.log(first / second)).sum() + (p * np.log(p / q)).sum()) / 2)


@pytest.mark.parametrize(("kind", "recipe"), [("int4-rtn-b32", (4, "rtn", 32)), ("int4-gptq-b128", (4, "gptq", 128)),
                                              ("int8-b32", (8, "rtn", 32))])
def test_candidate_names_say_their_recipe(kind, recipe):
    found = recipe_of(kind)
    assert (found.bits, found.algorithm, found.block_size) == recipe


def test_the_language_model_budget_holds_perplexity_and_greedy_agreement():
    policy = CompressionPolicy(max_perplexity_increase=0.03, min_greedy_agreement=0.9)
    base = {"perplexity": Measurement(2.0, "ppl")}

    def judged(ppl: float, agreement: float) -> str | None:
        return budget_violation("language_model", base, {"perplexity": Measurement(ppl, "ppl"),
                                                         "greedy_exact_match": Measurement(agreement, "ratio")}, policy)

    assert judged(2.06, 0.9) is None
    assert judged(2.07, 1.0) == "perplexity 2.07 above budget 2.06 (original 2 + 3%)"
    assert judged(2.0, 0.85) == "greedy agreement 0.850 below budget 0.900"


def test_an_int4_candidate_quantizes_every_matmul_and_still_continues_like_fp32(small_llm_onnx, tmp_path):
    recipe = quantize("int4-rtn-b32", small_llm_onnx, tmp_path / "int4", prompts=[])
    assert recipe["bits"] == 4 and recipe["block_size"] == 32
    graph = onnx.load(str(tmp_path / "int4" / "model.onnx"), load_external_data=False).graph
    kinds = [node.op_type for node in graph.node]
    assert kinds.count("MatMulNBits") == 4 * 5 + 1 and "MatMul" not in kinds  # qkv, o, gate, up, down; LM head
    assert kinds.count("GatherBlockQuantized") == 1 and recipe["quantized"].endswith("and the token embedding")
    assert model_size(small_llm_onnx) / model_size(tmp_path / "int4") >= 4
    # Tokenizer and config travel with it; its weights fit in the model file (external data only past 1.8 GB).
    companions = sorted(p.name for p in small_llm_onnx.iterdir() if p.name != "model.onnx.data")
    assert sorted(p.name for p in (tmp_path / "int4").iterdir()) == companions
    fp32, int4 = Decoder(small_llm_onnx), Decoder(tmp_path / "int4")
    prompt = [int(t) for t in fp32.logits([5, 6, 7]).argmax(axis=1)]
    assert list(int4.generate(prompt, 4)) == list(fp32.generate(prompt, 4))


def test_fp16_is_not_applicable_on_the_cpu_and_says_why(small_llm_onnx, tmp_path):
    with pytest.raises(NotApplicable, match="fp16 is for GPU targets"):
        quantize("fp16", small_llm_onnx, tmp_path / "fp16", prompts=[], device="cpu")


def test_decoders_are_timed_together_with_intervals_of_their_ratios_to_the_first(small_llm_onnx):
    decoders = [Decoder(small_llm_onnx), Decoder(small_llm_onnx)]
    first, second = time_decoders(decoders, [[5, 6, 7], [8, 9]], new_tokens=4, rounds=2, budget_s=0.0)
    timings = {"ttft_p50_ms", "ttft_p95_ms", "tpot_p50_ms", "tpot_p95_ms", "latency_p50_ms", "latency_p95_ms",
               "tokens_per_s"}
    ratios = {f"{name}{end}" for name in ("latency_ratio", "ttft_ratio") for end in ("", "_low", "_high")}
    assert (set(first), set(second)) == (timings, timings | ratios)
    assert first["latency_p50_ms"] == first["tpot_p50_ms"] and first["tokens_per_s"].unit == "tokens/s"
    for name in ("latency_ratio", "ttft_ratio"):
        assert second[f"{name}_low"].value <= second[name].value <= second[f"{name}_high"].value
