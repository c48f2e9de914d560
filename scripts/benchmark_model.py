"""Speed, FLOPs, parameters and memory of AutoBERT-Zero against `transformers.BertModel`, in one process.

    python scripts/benchmark_model.py [--json] [--repeats 7] [--sizes small base]

For `bert` and `autobert-zero` at each size, every number is a ratio to a `BertModel` (sdpa attention) of
the same size measured in the same run: forward time (batch 8 × 128, inference mode), train-step time
(forward + backward, batch 32 × 128, `small` only), inference FLOPs at sequence 128
(`modeling_autobert_zero.architecture.forward_flops`), parameters, and peak memory. Times are medians of `--repeats` runs with the
models interleaved, so drift in machine load hits all of them alike. Peak memory is measured per model
in isolation, in a fresh subprocess, as the peak above the process's baseline before the model was built:
peak RSS (VmHWM, with glibc's mmap threshold fixed so that freed memory is returned) on CPU, the
CUDA allocator's peak on a GPU.

The general interpreter (programs that fused attention kernels cannot run) is measured against eager PyTorch
written by hand for the same formulas: six programs (cosine, euclidean, softmax over features, matmul chains,
weights transformed after the softmax), on the same projected inputs (batch 8 × 128, `small` heads), padded
and unpadded, with the interpreter's padding semantics (SPEC §2: padded keys get weight 0, padded rows of the
output are 0). Times are medians of interleaved inference runs, on CPU of one thread's CPU time (immune to a
shared machine's load); `interpreter_vs_handwritten_ratio` is the worst program's ratio. With `--json` the last line is one JSON object of all figures.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F
from transformers import BertConfig, BertModel

from modeling_autobert_zero import AutoBertZeroConfig, AutoBertZeroModel
from modeling_autobert_zero.architecture import SIZE_PRESETS, forward_flops
from modeling_autobert_zero.attention_programs import compact_program, infer_shapes, parse_program
from modeling_autobert_zero.modeling_autobert_zero import ExecutionPlan, run_program


SEQ_LEN = 128
INFER_BATCH = 8
TRAIN_BATCH = 32
MODELS = ("bert_reference", "bert", "autobert_zero")


def build_model(name: str, size: str) -> torch.nn.Module:
    """`bert_reference` is `transformers.BertModel`; the others are presets of this package, same sizes."""
    if name == "bert_reference":
        preset = AutoBertZeroConfig.from_preset("bert", size)
        config = BertConfig(
            hidden_size=preset.hidden_size,
            num_attention_heads=preset.num_attention_heads,
            intermediate_size=preset.intermediate_size,
            num_hidden_layers=preset.num_hidden_layers,
            attn_implementation="sdpa",
        )
        return BertModel(config)
    config = AutoBertZeroConfig.from_preset(name.replace("_", "-"), size, attn_implementation="sdpa")
    return AutoBertZeroModel(config)


def make_inputs(batch: int, vocab_size: int, device: torch.device) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(1, vocab_size, (batch, SEQ_LEN), generator=generator)
    return {"input_ids": input_ids.to(device), "attention_mask": torch.ones_like(input_ids).to(device)}


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def inference_step(model: torch.nn.Module, inputs: dict) -> None:
    with torch.inference_mode():
        model(**inputs)


def train_step(model: torch.nn.Module, inputs: dict) -> None:
    model.zero_grad(set_to_none=True)
    model(**inputs).last_hidden_state.float().pow(2).mean().backward()


def interleaved_medians(
    models: dict, step, inputs: dict, repeats: int, device: torch.device, clock=time.perf_counter
) -> dict[str, float]:
    """Median seconds per step for each model; one warm-up each, then the models take turns."""
    for model in models.values():
        step(model, inputs)
    times: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(repeats):
        for name, model in models.items():
            synchronize(device)
            start = clock()
            step(model, inputs)
            synchronize(device)
            times[name].append(clock() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def peak_rss_bytes() -> int:
    """This process's peak resident set (VmHWM). Unlike `ru_maxrss`, it is not inherited from the parent
    across fork + exec, so a small child of a big benchmark process still measures itself."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("/proc/self/status has no VmHWM line; peak RSS cannot be measured on this system")


def memory_probe(name: str, size: str, mode: str, device_name: str) -> int:
    """Peak bytes above the baseline taken before the model was built (run in a fresh subprocess)."""
    device = torch.device(device_name)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        baseline = torch.cuda.memory_allocated()
    else:
        baseline = peak_rss_bytes()
    torch.manual_seed(0)
    model = build_model(name, size).to(device)
    if mode == "infer":
        model.eval()
        inference_step(model, make_inputs(INFER_BATCH, model.config.vocab_size, device))
    else:
        model.train()
        train_step(model, make_inputs(TRAIN_BATCH, model.config.vocab_size, device))
    synchronize(device)
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated() - baseline
    return peak_rss_bytes() - baseline


def isolated_peak_memory(name: str, size: str, mode: str, device: torch.device) -> int:
    command = [sys.executable, __file__, "--memory-probe", name, size, mode, str(device)]
    # glibc keeps freed blocks above its adaptive mmap threshold in the heap, so peak RSS would depend on
    # allocation history; a fixed threshold returns freed activations to the OS and RSS tracks live memory.
    environment = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
    result = subprocess.run(command, capture_output=True, text=True, check=True, env=environment)
    return int(result.stdout.strip().splitlines()[-1])


def benchmark(sizes: list[str], repeats: int, device: torch.device) -> dict[str, float]:
    results: dict[str, float] = {}
    for size in sizes:
        torch.manual_seed(0)
        models = {name: build_model(name, size).to(device).eval() for name in MODELS}
        vocab_size = models["bert_reference"].config.vocab_size
        flops = {name: forward_flops(model, SEQ_LEN) for name, model in models.items()}
        reference_flops = flops["bert_reference"]
        reference_params = sum(p.numel() for p in models["bert_reference"].parameters())
        infer_times = interleaved_medians(models, inference_step, make_inputs(INFER_BATCH, vocab_size, device), repeats, device)
        infer_memory = {name: isolated_peak_memory(name, size, "infer", device) for name in MODELS}
        train_times = train_memory = None
        if size == "small":
            for model in models.values():
                model.train()
            train_times = interleaved_medians(models, train_step, make_inputs(TRAIN_BATCH, vocab_size, device), repeats, device)
            train_memory = {name: isolated_peak_memory(name, size, "train", device) for name in MODELS}
        for name in MODELS[1:]:
            key = f"{name}_{size}"
            results[f"{key}_params"] = sum(p.numel() for p in models[name].parameters())
            results[f"{key}_params_ratio"] = results[f"{key}_params"] / reference_params
            results[f"{key}_flops"] = flops[name]
            results[f"{key}_flops_ratio"] = flops[name] / reference_flops
            results[f"{key}_infer_ratio"] = infer_times[name] / infer_times["bert_reference"]
            results[f"{key}_memory_ratio"] = infer_memory[name] / infer_memory["bert_reference"]
            if train_times is not None:
                results[f"{key}_train_ratio"] = train_times[name] / train_times["bert_reference"]
                results[f"{key}_train_memory_ratio"] = train_memory[name] / train_memory["bert_reference"]
        results[f"bert_reference_{size}_infer_seconds"] = infer_times["bert_reference"]
        results[f"bert_reference_{size}_flops"] = reference_flops
        if train_times is not None:
            results[f"bert_reference_{size}_train_seconds"] = train_times["bert_reference"]
    return results


# ---------------------------------------------------------------------------------------------------------
# The general interpreter against hand-written PyTorch of the same formulas.
# ---------------------------------------------------------------------------------------------------------

NORM_EPS = 1e-6  # the op table's epsilon for cosine and euclidean


def _handwritten_cosine(q, k, v, p, keys, rows, scale):
    scores = F.normalize(q, dim=-1, eps=NORM_EPS) @ F.normalize(k, dim=-1, eps=NORM_EPS).transpose(-1, -2)
    if keys is not None:
        scores = scores.masked_fill(~keys, torch.finfo(scores.dtype).min)
    return torch.softmax(scores, dim=-1) @ v


def _handwritten_euclidean(q, k, v, p, keys, rows, scale):
    distances = torch.cdist(q, k, compute_mode="donot_use_mm_for_euclid_dist")
    scores = -torch.sqrt(distances.square() + NORM_EPS)
    if keys is not None:
        scores = scores.masked_fill(~keys, torch.finfo(scores.dtype).min)
    return torch.softmax(scores, dim=-1) @ v


def _handwritten_feature_softmax(q, k, v, p, keys, rows, scale):
    if rows is not None:
        k = k.masked_fill(~rows, 0.0)  # padded tokens out of the sum over tokens
    return q @ torch.softmax((k.transpose(-1, -2) @ v) * scale, dim=-1)


def _handwritten_token_matmul_chain(q, k, v, p, keys, rows, scale):
    if rows is not None:
        k = k.masked_fill(~rows, 0.0)
    return ((q @ k.transpose(-1, -2)) * scale) @ v


def _handwritten_feature_matmul_chain(q, k, v, p, keys, rows, scale):
    if rows is not None:
        k = k.masked_fill(~rows, 0.0)
    return q @ (k.transpose(-1, -2) @ F.softsign(v))


def _handwritten_transformed_weights(q, k, v, p, keys, rows, scale):
    scores = (q @ F.logsigmoid(k).transpose(-1, -2)) * scale
    if keys is not None:
        scores = scores.masked_fill(~keys, torch.finfo(scores.dtype).min)
    return -torch.softmax(scores, dim=-1) @ (v + p)


INTERPRETER_PROGRAMS = {
    "cosine": ("matmul(softmax(cosine(Q, K)), V)", _handwritten_cosine),
    "euclidean": ("matmul(softmax(neg(euclidean(Q, K))), V)", _handwritten_euclidean),
    "feature_softmax": ("matmul(Q, softmax(scale(matmul(transpose(K), V))))", _handwritten_feature_softmax),
    "token_matmul_chain": ("matmul(scale(matmul(Q, transpose(K))), V)", _handwritten_token_matmul_chain),
    "feature_matmul_chain": ("matmul(Q, matmul(transpose(K), softsign(V)))", _handwritten_feature_matmul_chain),
    "transformed_weights": (
        "matmul(neg(softmax(scale(matmul(Q, transpose(logsigmoid(K)))))), add(V, P))",
        _handwritten_transformed_weights,
    ),
}


def handwritten_program(name: str, inputs: dict[str, torch.Tensor], token_mask: torch.Tensor | None, head_dim: int):
    """The hand-written formula of ``name``: the keys' padding masked where the formula reduces over tokens, the
    output's padded rows zeroed, as the interpreter's semantics require (SPEC §2)."""
    _, function = INTERPRETER_PROGRAMS[name]
    keys = None if token_mask is None else token_mask[..., None, :]  # (batch, 1, 1, seq)
    rows = None if token_mask is None else token_mask[..., :, None]  # (batch, 1, seq, 1)
    output = function(inputs["Q"], inputs["K"], inputs["V"], inputs["P"], keys, rows, head_dim**-0.5)
    return output if rows is None else output.masked_fill(~rows, 0.0)


def interpreted_program(name: str, inputs: dict[str, torch.Tensor], token_mask: torch.Tensor | None, head_dim: int):
    """``name``'s program run by the model's interpreter, exactly as an attention layer runs it."""
    program, plan = _interpreter_setup(name)
    values = run_program(program, plan, dict(inputs), token_mask, head_dim, lambda weights: weights)
    return values[len(program) - 1]


@functools.cache
def _interpreter_setup(name: str):
    program = compact_program(parse_program(INTERPRETER_PROGRAMS[name][0]))
    output = len(program) - 1
    return program, ExecutionPlan.build(program, infer_shapes(program), [output], {output}, zero_rows=(output,))


def interpreter_inputs(device: torch.device, padded: bool, batch: int = INFER_BATCH, heads: int = 4, head_dim: int = 64):
    """Projected inputs (batch, heads, seq, head_dim), and a token mask with a quarter of the rows padded."""
    generator = torch.Generator().manual_seed(0)
    inputs = {name: torch.randn(batch, heads, SEQ_LEN, head_dim, generator=generator).to(device) for name in "QKVP"}
    if not padded:
        return inputs, None
    lengths = torch.randint(SEQ_LEN // 2, SEQ_LEN + 1, (batch,), generator=generator)
    lengths[0] = SEQ_LEN
    token_mask = (torch.arange(SEQ_LEN)[None, :] < lengths[:, None])[:, None, :]  # (batch, 1, seq)
    return inputs, token_mask.to(device)


def benchmark_interpreter(repeats: int, device: torch.device) -> dict[str, float]:
    """Per program and padding, interpreter time / hand-written time (medians of interleaved runs).

    On CPU both run on one thread and are timed by that thread's CPU time, so the load of a shared machine
    (other processes taking the cores) does not enter the ratio; on a GPU, by wall time.
    """
    results: dict[str, float] = {}
    head_dim = 64
    threads = torch.get_num_threads()
    clock = time.thread_time if device.type == "cpu" else time.perf_counter
    if device.type == "cpu":
        torch.set_num_threads(1)
    try:
        for padded in (False, True):
            inputs, token_mask = interpreter_inputs(device, padded, head_dim=head_dim)
            for name in INTERPRETER_PROGRAMS:
                runs = {
                    "interpreter": lambda: interpreted_program(name, inputs, token_mask, head_dim),
                    "handwritten": lambda: handwritten_program(name, inputs, token_mask, head_dim),
                }
                with torch.inference_mode():
                    times = interleaved_medians(runs, lambda run, _: run(), None, repeats, device, clock)
                results[f"interpreter_{name}_{'padded' if padded else 'unpadded'}_ratio"] = (
                    times["interpreter"] / times["handwritten"]
                )
    finally:
        torch.set_num_threads(threads)
    results["interpreter_vs_handwritten_ratio"] = max(results.values())
    return results


def print_table(results: dict[str, float], sizes: list[str], device: torch.device) -> None:
    print(f"device: {device}; torch threads: {torch.get_num_threads()}; ratios are vs transformers.BertModel (sdpa)")
    columns = ("params", "flops", "infer", "memory", "train", "train_memory")
    print(f"{'model':<22}" + "".join(f"{column:>14}" for column in columns))
    for size in sizes:
        for name in MODELS[1:]:
            key = f"{name}_{size}"
            cells = [results.get(f"{key}_{column}_ratio") for column in columns]
            print(f"{key:<22}" + "".join(f"{cell:>14.3f}" if cell is not None else f"{'-':>14}" for cell in cells))
    print("\ninterpreter / hand-written PyTorch, same formula and masking (inference, batch 8 × 128, 4 heads of 64, "
          "one thread's CPU time on CPU):")
    print(f"{'program':<24}{'unpadded':>12}{'padded':>12}")
    for name in INTERPRETER_PROGRAMS:
        cells = [results[f"interpreter_{name}_{padding}_ratio"] for padding in ("unpadded", "padded")]
        print(f"{name:<24}" + "".join(f"{cell:>12.3f}" for cell in cells))
    print(f"worst: {results['interpreter_vs_handwritten_ratio']:.3f} (goal <= 1.25)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", nargs="+", default=["small", "base"], choices=list(SIZE_PRESETS))
    parser.add_argument("--repeats", type=int, default=7, help="timed runs per model (median reported; >= 5)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--json", action="store_true", help="end with one JSON line of all figures")
    parser.add_argument("--memory-probe", nargs=4, metavar=("MODEL", "SIZE", "MODE", "DEVICE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_probe:
        print(memory_probe(*args.memory_probe))
        return
    device = torch.device(args.device)
    results = benchmark(args.sizes, args.repeats, device)
    results.update(benchmark_interpreter(max(21, 3 * args.repeats), device))  # short runs: more of them
    print_table(results, args.sizes, device)
    if args.json:
        print(json.dumps(results))


if __name__ == "__main__":
    main()
