"""Adversarial `config.json` files of a given size: what a hostile or careless Hub upload could hold.

Each builder takes a count and returns the JSON text of a config whose `layers` stress one part of
validation: long chains, `add(x, x)` towers (whose printed expression doubles with every instruction), deep
nesting, huge integers, long layer lists. ``max_program_length`` is raised to the program's length, so valid
programs must be judged in full rather than rejected by the length rule. :func:`config_of_size` picks the
count that makes the file as large as asked.
"""

from __future__ import annotations

import json
from collections.abc import Callable

TINY = {"hidden_size": 16, "num_attention_heads": 2, "intermediate_size": 32, "vocab_size": 50, "max_position_embeddings": 32}
ATTENTION_HEAD = "matmul(softmax(scale(matmul(Q, transpose({keys})))), V)"
OUTPUT_HEAD = ["transpose", "matmul", "softmax", "matmul"]  # (n, d) value x -> softmax(Q xᵀ) V


def _config(layers: list, max_program_length: int = 16) -> str:
    return json.dumps({"model_type": "autobert_zero", **TINY, "max_program_length": max_program_length, "layers": layers})


def _with_output(program: list[dict], value: int) -> list[dict]:
    """``program`` followed by ``softmax(Q · valueᵀ) · V``, so that ``value`` (an (n, d) value) reaches a valid output."""
    start = len(program)
    return program + [
        {"op": "transpose", "args": [value]},
        {"op": "matmul", "args": ["Q", start]},
        {"op": "softmax", "args": [start + 1]},
        {"op": "matmul", "args": [start + 2, "V"]},
    ]


def _attention(program: list[dict]) -> str:
    return _config([{"type": "attention", "program": program}], len(program))


def deep_chain_expression(count: int) -> str:
    """One valid program written as an expression: the keys go through ``count`` nested ``neg``."""
    keys = "neg(" * count + "K" + ")" * count
    return _config([{"type": "attention", "program": ATTENTION_HEAD.format(keys=keys)}], count + 8)


def add_tower(count: int) -> str:
    """Each value is ``add(v, v)`` of the one before: the printed expression has 2^count leaves."""
    program = [{"op": "add", "args": ["K", "K"]}] + [{"op": "add", "args": [i, i]} for i in range(count)]
    return _attention(_with_output(program, len(program) - 1))


def zigzag(count: int) -> str:
    """Alternating ``matmul(x, W)`` and ``add(Q, x)`` in two towers on different bases that agree everywhere but
    at the bottom, and an ``add`` of every value of one tower with the other's top: the worst case for
    ordering the arguments of ``add`` by comparing expressions."""
    program = [{"op": "transpose", "args": ["K"]}, {"op": "matmul", "args": [0, "K"]}]  # W (d, d)
    tops, levels = [], []
    for base in ("K", "V"):
        previous = base
        for _ in range(count):
            program.append({"op": "matmul", "args": [previous, 1]})
            program.append({"op": "add", "args": ["Q", len(program) - 1]})
            previous = len(program) - 1
            levels.append(previous)
        tops.append(previous)
    total = tops[0]
    for value in levels[:count]:
        program.append({"op": "add", "args": [value, tops[1]]})
        program.append({"op": "add", "args": [total, len(program) - 1]})
        total = len(program) - 1
    return _attention(_with_output(program, total))


def huge_integers(count: int) -> str:
    """Instruction arguments that are integers of 4000 digits (Python's JSON parser allows up to 4300)."""
    huge = int("9" * 4000)
    return _attention([{"op": "neg", "args": ["Q"]}] + [{"op": "neg", "args": [huge]} for _ in range(count)])


def unbalanced_nesting(count: int) -> str:
    """An expression that opens ``count`` calls and closes none."""
    return _config([{"type": "attention", "program": "neg(" * count}])


def many_layers(count: int) -> str:
    return _config([{"type": "attention", "program": ATTENTION_HEAD.format(keys="K")}] * count)


def many_conv_layers(count: int) -> str:
    return _config([{"type": "conv", "kernel_size": 65}] * count)


BUILDERS: dict[str, Callable[[int], str]] = {
    builder.__name__: builder
    for builder in (deep_chain_expression, add_tower, zigzag, huge_integers, unbalanced_nesting, many_layers, many_conv_layers)
}


def config_of_size(kind: str, size: int) -> str:
    """The JSON text of ``kind`` with the largest count whose file is at most ``size`` characters."""
    builder = BUILDERS[kind]
    count = 1000
    text = builder(count)
    for _ in range(20):  # the size per unit grows slowly with the count (longer indices): a few rescalings
        if 0.95 * size < len(text) <= size:
            break
        count = max(1, int(count * size / len(text) * 0.99))
        text = builder(count)
    return text
