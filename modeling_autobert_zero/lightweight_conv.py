"""Lightweight convolution (Wu et al., 2019) computed three equivalent ways, and the choice between them.

All three compute, for inputs ``(batch, seq, hidden)`` and a normalised kernel ``(heads, k)`` shared by the
``hidden / heads`` channels of each head, the depthwise 'same'-padded convolution over the sequence:

- ``grouped``: ``torch.nn.functional.conv1d`` with ``groups=hidden``. Cheapest in FLOPs, but oneDNN's
  depthwise kernel on CPU gets much slower with wide kernels (about 6x from k=3 to k=65).
- ``banded``: the kernel laid out as a ``(heads, seq, seq)`` band matrix and applied with one batched
  matmul. ``seq / k`` times the FLOPs of ``grouped``, but runs at GEMM speed, so it wins for wide kernels on
  short sequences.
- ``fft``: circular convolution of zero-padded signals in the frequency domain; cost independent of ``k``.

``choose_conv_strategy`` picks per kernel size, sequence length and device from measurements made with
``python scripts/benchmark_conv.py`` (which prints the table it measured and the choice it agrees with).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def grouped_conv(inputs: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    batch, seq_len, hidden = inputs.shape
    heads, kernel_size = kernel.shape
    weight = kernel.repeat_interleave(hidden // heads, dim=0).unsqueeze(1)  # (hidden, 1, k)
    outputs = F.conv1d(inputs.transpose(1, 2), weight, padding=kernel_size // 2, groups=hidden)
    return outputs.transpose(1, 2)


def band_matrix(kernel: torch.Tensor, seq_len: int) -> torch.Tensor:
    """``band[h, i, j] = kernel[h, j - i + k // 2]`` where that tap exists, else 0: shape (heads, seq, seq)."""
    heads, kernel_size = kernel.shape
    positions = torch.arange(seq_len, device=kernel.device)
    taps = positions[None, :] - positions[:, None] + kernel_size // 2  # (seq, seq)
    inside = (taps >= 0) & (taps < kernel_size)
    band = kernel[:, taps.clamp(0, kernel_size - 1)]  # (heads, seq, seq)
    return band * inside.to(kernel.dtype)


def banded_conv(inputs: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    batch, seq_len, hidden = inputs.shape
    heads = kernel.shape[0]
    per_head = inputs.view(batch, seq_len, heads, hidden // heads)
    # einsum contracts per head without broadcasting the band over the batch, which `matmul` would
    # materialise (and keep for backward) as a (batch, heads, seq, seq) copy
    outputs = torch.einsum("hij,bjhc->bihc", band_matrix(kernel, seq_len), per_head)
    return outputs.reshape(batch, seq_len, hidden)


def fft_conv(inputs: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    batch, seq_len, hidden = inputs.shape
    heads, kernel_size = kernel.shape
    half = kernel_size // 2
    length = seq_len + kernel_size - 1
    dtype = torch.promote_types(inputs.dtype, torch.float32)  # FFTs need at least float32
    signal = torch.fft.rfft(inputs.to(dtype), n=length, dim=1)  # (batch, freq, hidden)
    # correlation with the kernel == convolution with the kernel reversed
    filters = torch.fft.rfft(kernel.to(dtype).flip(-1), n=length, dim=-1)  # (heads, freq)
    filters = filters.repeat_interleave(hidden // heads, dim=0).transpose(0, 1)  # (freq, hidden)
    full = torch.fft.irfft(signal * filters, n=length, dim=1)
    return full[:, half : half + seq_len].to(inputs.dtype)


CONV_STRATEGIES = {"grouped": grouped_conv, "banded": banded_conv, "fft": fft_conv}


def choose_conv_strategy(kernel_size: int, seq_len: int, device_type: str) -> str:
    """The fastest strategy measured for this size (see the module docstring for how it was measured)."""
    if device_type != "cpu" or kernel_size <= 9:
        return "grouped"
    if seq_len <= 256:
        return "banded"
    return "grouped" if kernel_size <= 15 else "fft"


def lightweight_conv(inputs: torch.Tensor, kernel: torch.Tensor, strategy: str | None = None) -> torch.Tensor:
    """Depthwise 'same' convolution of ``inputs`` (batch, seq, hidden) with ``kernel`` (heads, k)."""
    if strategy is None:
        strategy = choose_conv_strategy(kernel.shape[-1], inputs.shape[1], inputs.device.type)
    return CONV_STRATEGIES[strategy](inputs, kernel)
