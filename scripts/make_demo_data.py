"""Rebuild `demo_data/`, the small bundled subset that the quickstart, the README commands and the offline tests use.

    python scripts/make_demo_data.py --source ../shared/data --output demo_data

Every text file is an unmodified prefix (whole lines / whole rows) of a public file described in
`../shared/data/PROVENANCE.md`; every SQuAD file holds whole paragraphs (context and questions unmodified) of
the first articles of an official-format file. `demo_data/PROVENANCE.md` lists what was taken from where,
with checksums.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import tempfile
import sys
from dataclasses import dataclass
from pathlib import Path


if __package__ in (None, ""):  # run as a file: make the repository importable (the demo vocabulary uses it)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


@dataclass(frozen=True)
class LinePrefix:
    """The first ``lines`` lines of ``source`` (all of it when None), byte for byte."""

    source: str
    destination: str
    lines: int | None

    def extract(self, source: Path) -> bytes:
        with open(source, "rb") as reader:
            if self.lines is None:
                return reader.read()
            return b"".join(line for _, line in zip(range(self.lines), reader))

    def kept(self, _: bytes) -> str:
        return "whole file" if self.lines is None else f"first {self.lines} lines"


@dataclass(frozen=True)
class SquadParagraphs:
    """The first ``paragraphs`` paragraphs of articles ``first_article`` to ``last_article`` (inclusive) of an
    official-format SQuAD file: titles, contexts and questions (answers, ids, ``is_impossible``) unmodified."""

    source: str
    destination: str
    first_article: int
    last_article: int
    paragraphs: int

    def extract(self, source: Path) -> bytes:
        document = json.loads(source.read_text(encoding="utf-8"))
        articles = document["data"][self.first_article : self.last_article + 1]
        subset = {
            "version": document["version"],
            "data": [{"title": article["title"], "paragraphs": article["paragraphs"][: self.paragraphs]} for article in articles],
        }
        return (json.dumps(subset, ensure_ascii=False) + "\n").encode("utf-8")

    def kept(self, content: bytes) -> str:
        document = json.loads(content)
        questions = [qa for article in document["data"] for paragraph in article["paragraphs"] for qa in paragraph["qas"]]
        unanswerable = sum(bool(qa.get("is_impossible")) for qa in questions)
        titles = ", ".join(article["title"] for article in document["data"])
        counts = f"{len(questions)} questions" + (f" ({unanswerable} unanswerable)" if unanswerable else "")
        articles = (
            f"article {self.first_article}" if self.first_article == self.last_article
            else f"articles {self.first_article}–{self.last_article}"
        )
        return f"first {self.paragraphs} paragraphs of {articles} ({titles}): {counts}"


SUBSETS = [
    LinePrefix("vocab/bert-base-uncased-vocab.txt", "vocab.txt", None),
    LinePrefix("wikitext-2-raw/wiki.valid.raw", "wikitext-2-raw/wiki.demo.raw", 600),
    LinePrefix("wikitext-2-raw/wiki.test.raw", "wikitext-2-raw/wiki.demo-test.raw", 264),  # the first 4 articles
    LinePrefix("glue/RTE/train.tsv", "glue/RTE/train.tsv", 401),
    LinePrefix("glue/RTE/dev.tsv", "glue/RTE/dev.tsv", 101),
    LinePrefix("glue/SST-2/train.tsv", "glue/SST-2/train.tsv", 801),
    LinePrefix("glue/SST-2/dev.tsv", "glue/SST-2/dev.tsv", 201),
    LinePrefix("glue/MRPC/train.tsv", "glue/MRPC/train.tsv", 401),
    LinePrefix("glue/MRPC/dev.tsv", "glue/MRPC/dev.tsv", 101),
    # The shared data has no SQuAD train files (see its PROVENANCE.md): both demo splits come from dev files,
    # from different articles, so no demo dev context is ever trained on.
    SquadParagraphs("squad/dev-v1.1.json", "squad/v1.1/train.json", 0, 3, 12),
    SquadParagraphs("squad/dev-v1.1.json", "squad/v1.1/dev.json", 4, 4, 12),
    SquadParagraphs("squad/v2.0-cs224n-split/dev-v2.0.json", "squad/v2.0/train.json", 0, 3, 8),
    SquadParagraphs("squad/v2.0-cs224n-split/dev-v2.0.json", "squad/v2.0/dev.json", 4, 4, 12),
]

@dataclass(frozen=True)
class CompactVocabulary:
    """The word pieces of the demo ``vocabulary`` that the demo WikiText ``texts`` use, with BERT's special tokens,
    in vocabulary order (``search.benchmark_protocol.compact_vocabulary``): the same text splits into the same
    pieces, and a tiny model's output layer shrinks from 30,522 classes to those the text can ask for. Made
    from files of ``demo_data/`` itself, after them."""

    vocabulary: str
    destination: str
    texts: tuple[str, ...]

    def extract(self, demo_data: Path) -> bytes:
        from search.benchmark_protocol import compact_vocabulary
        from training.tokenization import load_tokenizer

        lines = [line for text in self.texts for line in (demo_data / text).read_text(encoding="utf-8").splitlines(keepends=True)]
        tokens = compact_vocabulary(load_tokenizer(demo_data / self.vocabulary), lines)
        return ("\n".join(tokens) + "\n").encode("utf-8")

    def kept(self, content: bytes) -> str:
        texts = " and ".join(f"`{text}`" for text in self.texts)
        pieces = len(content.splitlines())
        return f"derived from the demo `{self.vocabulary}`: the {pieces} word pieces (special tokens included) that {texts} use"


DEMO_VOCABULARY = CompactVocabulary(
    "vocab.txt", "vocab-wikitext-demo.txt", ("wikitext-2-raw/wiki.demo.raw", "wikitext-2-raw/wiki.demo-test.raw")
)

PROVENANCE_HEADER = """\
# Provenance of `demo_data/`

A small demo subset for the quickstart, the README's commands and the offline tests, made by
`python scripts/make_demo_data.py` from the project's shared data folder. The sources, their origin and
licenses are described in that folder's `PROVENANCE.md` (BERT vocabulary: Apache-2.0; WikiText-2: CC BY-SA
3.0; GLUE tasks: their original licenses — RTE research use, SST-2 research use, MRPC Microsoft Research
Paraphrase Corpus terms; SQuAD: CC BY-SA 4.0).

- Text and GLUE files are unmodified prefixes of the source files (GLUE files keep their header row), so a
  demo dev file holds the first rows of the official dev set.
- SQuAD files hold whole paragraphs (context, questions, answers, ids unmodified) of the first articles of the
  official-format source, re-serialised as JSON. The shared data has no SQuAD train files, so the demo
  `train.json` files come from dev files too, from other articles than the demo `dev.json`: v1.1 from the
  official v1.1 dev set, v2.0 from the CS224N half of the official v2.0 dev set (re-hashed question ids, no
  `plausible_answers`). The full files are `train-v1.1.json`, `dev-v1.1.json`, `train-v2.0.json` and
  `dev-v2.0.json` from https://rajpurkar.github.io/SQuAD-explorer/ (also on the Hub as `rajpurkar/squad` and
  `rajpurkar/squad_v2`, in another format).
- `vocab-wikitext-demo.txt` is not taken from a source file: it is the part of the demo `vocab.txt` (listed as
  its source) that the demo WikiText text uses (`search/configs/tiny.yaml` scores candidates with it; see the
  README's search section).
- Scores on these subsets show that a pipeline runs; they are not comparable with published results.

| file | source (under the shared `data/`) | kept | SHA-256 |
|---|---|---|---|
"""


def write_atomic(destination: Path, content: bytes) -> None:
    destination.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("wb", dir=destination.parent, delete=False) as out:
        out.write(content)
    os.chmod(out.name, 0o644)
    os.replace(out.name, destination)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--source", default="../shared/data")
    parser.add_argument("--output", default="demo_data")
    args = parser.parse_args()
    source, output = Path(args.source), Path(args.output)
    missing = [str(source / subset.source) for subset in SUBSETS if not (source / subset.source).is_file()]
    if missing:
        raise FileNotFoundError(f"missing {missing}; point --source at the shared data folder")
    rows = []
    for subset in SUBSETS:
        content = subset.extract(source / subset.source)
        write_atomic(output / subset.destination, content)
        digest = hashlib.sha256(content).hexdigest()
        rows.append(f"| `{subset.destination}` | `{subset.source}` | {subset.kept(content)} | `{digest[:16]}…` |")
    content = DEMO_VOCABULARY.extract(output)
    write_atomic(output / DEMO_VOCABULARY.destination, content)
    rows.append(
        f"| `{DEMO_VOCABULARY.destination}` | `{DEMO_VOCABULARY.vocabulary}` | {DEMO_VOCABULARY.kept(content)} "
        f"| `{hashlib.sha256(content).hexdigest()[:16]}…` |"
    )
    write_atomic(output / "PROVENANCE.md", (PROVENANCE_HEADER + "\n".join(rows) + "\n").encode("utf-8"))
    print(f"wrote {len(rows)} files under {output}")


if __name__ == "__main__":
    main()
