"""Exhaustive enumeration of small sub-spaces and the benchmark-table file format."""

from __future__ import annotations

import json

import pytest

from modeling_autobert_zero.architecture import architecture_key
from search.space import SearchSpace, SearchSpaceError, enumerate_architectures, enumerate_programs, sample_architecture
from search.tabular import BenchmarkTable, TableEntry, TableError


SMALL = SearchSpace(num_layers=2, kernel_sizes=(3, 9), inputs=("Q", "K"), min_program_length=1, max_program_length=2)


def test_enumeration_finds_every_valid_program_once():
    programs = enumerate_programs(SMALL)
    keys = [program.to_expression() for program in programs]
    assert len(keys) == len(set(keys)) == 12  # {cosine, euclidean}(a, b) · c over a, b, c in {Q, K}, both read
    assert "matmul(cosine(Q, K), Q)" in keys
    assert all(len(program) <= SMALL.max_program_length for program in programs)


def test_enumeration_contains_every_sample_of_the_space():
    import random

    architectures = enumerate_architectures(SMALL)
    assert len(architectures) == (2 + 12) ** 2
    known = {architecture_key(architecture) for architecture in architectures}
    rng = random.Random(0)
    for _ in range(200):
        assert architecture_key(sample_architecture(SMALL, rng)) in known


def test_enumeration_refuses_a_space_beyond_the_limit():
    with pytest.raises(SearchSpaceError, match="more than the limit"):
        enumerate_architectures(SMALL, limit=100)


def _table(entries=None) -> BenchmarkTable:
    architectures = enumerate_architectures(SMALL)[:3]
    entries = entries or tuple(
        TableEntry(architecture, (-float(i), -float(i) - 0.5), (1.0, 1.5), {"held_out_mlm_loss": (float(i), i + 0.5)})
        for i, architecture in enumerate(architectures)
    )
    return BenchmarkTable("fixture", SMALL, (0, 1), tuple(entries), exhaustive=False, score_name="neg_held_out_mlm_loss")


def test_a_table_round_trips_through_json_and_csv(tmp_path):
    table = _table()
    path = table.save(tmp_path / "table.json")
    loaded = BenchmarkTable.load(path)
    assert loaded == table
    assert loaded.lookup(table.entries[1].architecture).score == pytest.approx(-1.25)
    assert (tmp_path / "table.csv").read_text().count("\n") == len(table) + 1


def test_lookup_of_an_unknown_architecture_names_the_table():
    table = _table()
    other = enumerate_architectures(SMALL)[-1]
    assert other not in table
    with pytest.raises(TableError, match="'fixture' has no entry"):
        table.lookup(other)


def test_keys_are_recomputed_from_the_stored_architecture(tmp_path):
    data = _table().to_json()
    data["entries"][0]["key"] = "a key spelled by another version"
    data["entries"][0]["architecture"] = [
        {"type": "attention", "program": "matmul(cosine(Q, K), Q)"},  # an expression: canonicalised on load
        data["entries"][0]["architecture"][1],
    ]
    (tmp_path / "t.json").write_text(json.dumps(data))
    loaded = BenchmarkTable.load(tmp_path / "t.json")
    expected = SMALL.canonical_architecture(data["entries"][0]["architecture"])
    assert loaded.entries[0].architecture == expected and expected in loaded


@pytest.mark.parametrize(
    "corrupt, message",
    [
        (lambda d: d.update(format_version=99), "format_version|version 99"),
        (lambda d: d.pop("seeds"), "missing field"),
        (lambda d: d["entries"][1].update(scores=[1.0]), r"entries\[1\]: expected one score"),
        (lambda d: d["entries"][2].update(scores=[1.0, float("nan")]), r"entries\[2\]: scores: every value must be finite"),
        (lambda d: d["entries"][0].update(architecture=[{"type": "conv", "kernel_size": 65}] * 2), r"entries\[0\]: the architecture is not in"),
        (lambda d: d["entries"].append(dict(d["entries"][0])), "repeats the architecture"),
        (lambda d: d["space"].update(num_layers="two"), "space.num_layers"),
    ],
)
def test_a_bad_table_is_refused_naming_the_file_and_field(tmp_path, corrupt, message):
    data = _table().to_json()
    corrupt(data)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data, allow_nan=True))
    with pytest.raises(TableError, match=message) as error:
        BenchmarkTable.load(path)
    assert str(path) in str(error.value)


def test_a_truncated_table_is_refused(tmp_path):
    path = tmp_path / "cut.json"
    path.write_text(json.dumps(_table().to_json())[:100])
    with pytest.raises(TableError, match="not valid JSON"):
        BenchmarkTable.load(path)
