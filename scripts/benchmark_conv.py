"""Time the three lightweight-convolution strategies per kernel size, and check the built-in choice.

    python scripts/benchmark_conv.py [--seq-lens 128 512] [--repeats 7] [--device cpu]

For each shape (the `small` and `base` hidden sizes at the benchmark batch sizes) and kernel size in the
search space, prints the median forward and forward+backward time of `grouped`, `banded` and `fft`
(modeling_autobert_zero/lightweight_conv.py) as ratios to the fastest, and which one
`choose_conv_strategy` picks. The choice is the one that table was measured to favour on this project's
2-core CPU machines; rerun it on yours.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from modeling_autobert_zero.architecture import CONV_KERNEL_SIZES, SIZE_PRESETS
from modeling_autobert_zero.lightweight_conv import CONV_STRATEGIES, choose_conv_strategy

SHAPES = {  # name: (batch, hidden, heads), at the benchmark batch sizes
    size: (batch, SIZE_PRESETS[size]["hidden_size"], SIZE_PRESETS[size]["num_attention_heads"])
    for size, batch in (("small", 32), ("base", 8))
}


def median_seconds(function, repeats: int, device: torch.device) -> float:
    function()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        function()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seq-lens", nargs="+", type=int, default=[128, 512])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    print(f"device {device}, {torch.get_num_threads()} threads; time per strategy / fastest (forward | fwd+bwd)")
    print(f"{'shape':<8}{'seq':>5}{'k':>4}  " + "".join(f"{name:>16}" for name in CONV_STRATEGIES) + "   chosen  fastest")
    agree = total = 0
    for shape_name, (batch, hidden, heads) in SHAPES.items():
        for seq_len in args.seq_lens:
            for kernel_size in CONV_KERNEL_SIZES:
                inputs = torch.randn(batch, seq_len, hidden, device=device)
                kernel = torch.softmax(torch.randn(heads, kernel_size, device=device), dim=-1)
                reference = CONV_STRATEGIES["grouped"](inputs, kernel)
                cells, totals = [], {}
                for name, strategy in CONV_STRATEGIES.items():
                    error = (strategy(inputs, kernel) - reference).abs().max().item()
                    if error > 1e-4:
                        raise AssertionError(f"{name} disagrees with grouped by {error:.2g} at k={kernel_size}")
                    with torch.inference_mode():
                        forward = median_seconds(lambda: strategy(inputs, kernel), args.repeats, device)
                    trainable_inputs = inputs.clone().requires_grad_()
                    trainable_kernel = kernel.clone().requires_grad_()
                    backward = median_seconds(
                        lambda: strategy(trainable_inputs, trainable_kernel).sum().backward(), args.repeats, device
                    )
                    totals[name] = (forward, backward)
                fastest_forward = min(value[0] for value in totals.values())
                fastest_backward = min(value[1] for value in totals.values())
                for forward, backward in totals.values():
                    cells.append(f"{forward / fastest_forward:>7.2f} |{backward / fastest_backward:>6.2f}")
                chosen = choose_conv_strategy(kernel_size, seq_len, device.type)
                fastest = min(totals, key=lambda name: totals[name][0] + totals[name][1])
                agree += chosen == fastest
                total += 1
                print(f"{shape_name:<8}{seq_len:>5}{kernel_size:>4}  " + "".join(f"{cell:>16}" for cell in cells)
                      + f"  {chosen:>7}  {fastest:>7}")
    print(f"choose_conv_strategy picks the fastest (forward + backward) in {agree} of {total} cases")


if __name__ == "__main__":
    main()
