"""A frozen copy of the canonical-form algorithm as it was before programs were canonicalised in linear space.

It expands every shared subexpression into a string (exponential for ``add(x, x)`` towers) and recurses once
per level (``RecursionError`` on long chains), but it *defines* the canonical instruction lists that search
states and benchmark tables store. The tests check that the linear algorithm gives the same lists wherever
this one terminates. Do not change it.
"""

from __future__ import annotations

from modeling_autobert_zero.attention_programs import OPS, Instruction, Program


def legacy_canonical_program(program: Program) -> Program:
    keys: list[str] = []
    for instruction in program.instructions:
        operand_keys = [arg if isinstance(arg, str) else keys[arg] for arg in instruction.args]
        if OPS[instruction.op].commutative:
            operand_keys.sort()
        keys.append(f"{instruction.op}({', '.join(operand_keys)})")

    canonical: list[Instruction] = []
    index_of_key: dict[str, int] = {}

    def emit(position: int):
        key = keys[position]
        if key in index_of_key:
            return index_of_key[key]
        instruction = program.instructions[position]
        args = list(instruction.args)
        if OPS[instruction.op].commutative:
            args.sort(key=lambda arg: arg if isinstance(arg, str) else keys[arg])
        operands = tuple(arg if isinstance(arg, str) else emit(arg) for arg in args)
        canonical.append(Instruction(instruction.op, operands))
        index_of_key[key] = len(canonical) - 1
        return index_of_key[key]

    emit(len(program.instructions) - 1)
    return Program(tuple(canonical))


def legacy_architecture_key(program: Program) -> str:
    return legacy_canonical_program(program).to_expression()
