"""`key=value` overrides on top of a YAML/JSON config file: one rule for every script and the search.

    python search/run_opnas.py --config search/configs/tiny.yaml max_evaluations=4 evaluator.biws.pretraining.max_steps=5
    python scripts/pretrain.py runs/pretrain.yaml max_steps=20 train_files=[my_corpus.txt]

A value is read as YAML: ``20`` is a number, ``true``/``false`` booleans, ``null`` nothing, ``[a, b]`` a list,
anything else a string; numbers in exponent notation (``1e-3``, which YAML 1.1 reads as a string) are numbers
too. A dotted key (``evaluator.biws.tokenizer``) reaches into nested sections. Only PyYAML's safe loader reads
a value, so an override is data, never code.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import yaml


KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")
EXPONENT_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


class OverrideError(ValueError):
    """An override that is not ``key=value``, or a dotted key that runs into a value that is not a section."""


def is_override(text: str) -> bool:
    """Whether ``text`` has the form ``key=value`` (a key of letters, digits, ``_`` and dots)."""
    key, separator, _ = text.partition("=")
    return bool(separator) and KEY.fullmatch(key) is not None


def parse_override(text: str) -> tuple[str, Any]:
    """``"key=value"`` as ``(key, value)``, the value read as YAML (see the module docstring)."""
    if not is_override(text):
        raise OverrideError(f"{text!r}: expected an override key=value (e.g. max_steps=20 or evaluator.biws.proxy=mlm_loss)")
    key, _, raw = text.partition("=")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as error:
        raise OverrideError(f"{text!r}: the value is not valid YAML ({error})") from None
    if isinstance(value, str) and EXPONENT_FLOAT.fullmatch(value.strip()):
        value = float(value)
    return key, value


def parse_overrides(texts: Iterable[str]) -> dict[str, Any]:
    """Every ``key=value`` of ``texts`` as a mapping (a key given twice: the last value counts)."""
    return dict(parse_override(text) for text in texts)


def split_overrides(
    argv: Iterable[str], is_setting: Callable[[str], bool] = lambda key: True
) -> tuple[list[str], dict[str, Any]]:
    """``argv`` as (the other arguments, the overrides): a ``key=value`` token whose key passes ``is_setting``
    is an override wherever it stands, so it is never taken for the value of the flag before it
    (``--resume max_steps=5``); ``--config_overrides hidden_size=64`` keeps its value when ``hidden_size`` is
    not a setting."""
    rest, overrides = [], []
    for token in argv:
        (overrides if is_override(token) and is_setting(token.partition("=")[0]) else rest).append(token)
    return rest, parse_overrides(overrides)


def apply_overrides(data: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """A deep copy of ``data`` with each dotted key of ``overrides`` set (missing sections are created)."""
    result = copy.deepcopy(dict(data))
    for dotted, value in overrides.items():
        node = result
        *parents, leaf = dotted.split(".")
        for depth, parent in enumerate(parents):
            child = node.setdefault(parent, {})
            if not isinstance(child, dict):
                where = ".".join(parents[: depth + 1])
                raise OverrideError(f"override {dotted}: {where} is {child!r:.60}, not a section of settings")
            node = child
        node[leaf] = value
    return result
