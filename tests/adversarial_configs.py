"""Adversarial `config.json` files of a given size: what a hostile or careless Hub upload could hold.

Each builder returns the JSON text of a config whose `layers` stress one part of validation: long chains,
`add(x, x)` towers (whose printed expression doubles with every instruction), deep nesting, huge integers,
long layer lists. ``max_program_length`` is raised to the program's length, so valid programs must be
judged in full rather than rejected by the length rule.
"""

from __future__ import annotations

import json

TINY = {"hidden_size": 16, "num_attention_heads": 2, "intermediate_size": 32, "vocab_size": 50, "max_position_embeddings": 32}
ATTENTION_HEAD = "matmul(softmax(scale(matmul(Q, transpose({keys})))), V)"


def _config(layers: list, max_program_length: int) -> str:
    return json.dumps({"model_type": "autobert_zero", **TINY, "max_program_length": max_program_length, "layers": layers})


def deep_chain_expression(size: int) -> str:
    """One valid program: the keys go through a chain of ``neg`` nested as deep as the file allows."""
    depth = size // 5
    keys = "neg(" * depth + "K" + ")" * depth
    return _config([{"type": "attention", "program": ATTENTION_HEAD.format(keys=keys)}], depth + 8)


def add_tower(size: int) -> str:
    """One valid instruction list whose i-th value is ``add(v, v)`` of the one before: its expression has
    2^i leaves."""
    count = size // len('{"op": "add", "args": [99999, 99999]}, ')
    program = [{"op": "add", "args": ["K", "K"]}] + [{"op": "add", "args": [i, i]} for i in range(count)]
    head = len(program)
    program += [
        {"op": "transpose", "args": [head - 1]},
        {"op": "matmul", "args": ["Q", head]},
        {"op": "softmax", "args": [head + 1]},
        {"op": "matmul", "args": [head + 2, "V"]},
    ]
    return _config([{"type": "attention", "program": program}], len(program))


def zigzag(size: int) -> str:
    """One valid instruction list alternating ``matmul(x, W)`` and ``add(Q, x)``, two towers on different
    bases that agree everywhere but at the bottom: the worst case for ordering the arguments of ``add``."""
    per_level = len('{"op": "matmul", "args": [99999, 2]}, {"op": "add", "args": ["Q", 99999]}, {"op": "add", "args": [99999, 99999]}, ')
    levels = size // per_level // 2
    program = [
        {"op": "transpose", "args": ["K"]},
        {"op": "matmul", "args": [0, "K"]},  # W (d, d)
    ]
    tops = []
    for base in ("K", "V"):
        previous = base
        for _ in range(levels):
            program.append({"op": "matmul", "args": [previous, 1]})
            program.append({"op": "add", "args": ["Q", len(program) - 1]})
            previous = len(program) - 1
        tops.append(previous)
    total = tops[0]
    for index in range(2, len(program)):  # compare every (n, d) value of one tower with the other's top
        if program[index]["op"] == "add":
            program.append({"op": "add", "args": [index, tops[1]]})
            program.append({"op": "add", "args": [total, len(program) - 1]})
            total = len(program) - 1
    program += [
        {"op": "transpose", "args": [total]},
        {"op": "matmul", "args": ["Q", len(program)]},
        {"op": "softmax", "args": [len(program) + 1]},
        {"op": "matmul", "args": [len(program) + 2, "V"]},
    ]
    return _config([{"type": "attention", "program": program}], len(program))


def huge_integers(size: int) -> str:
    """Instruction arguments that are integers of 4000 digits (JSON's parser allows up to 4300)."""
    huge = int("9" * 4000)
    count = max(1, size // 4050)
    program = [{"op": "neg", "args": ["Q"]}] + [{"op": "neg", "args": [huge]} for _ in range(count)]
    return _config([{"type": "attention", "program": program}], len(program))


def unbalanced_nesting(size: int) -> str:
    """An expression that opens a million calls and closes none."""
    return _config([{"type": "attention", "program": "neg(" * (size // 4)}], 16)


def many_layers(size: int) -> str:
    """As many BERT attention layers as fit."""
    layer = {"type": "attention", "program": ATTENTION_HEAD.format(keys="K")}
    count = size // len(json.dumps(layer))
    return _config([layer] * count, 16)


def many_conv_layers(size: int) -> str:
    layer = {"type": "conv", "kernel_size": 65}
    return _config([layer] * (size // len(json.dumps(layer))), 16)


BUILDERS = {
    builder.__name__: builder
    for builder in (deep_chain_expression, add_tower, zigzag, huge_integers, unbalanced_nesting, many_layers, many_conv_layers)
}
