"""Rebuild `demo_data/`, the small bundled subset that the quickstart and offline tests use.

    python scripts/make_demo_data.py --source ../shared/data --output demo_data

Every file is an unmodified prefix (whole lines / whole rows) of a public file described in
`../shared/data/PROVENANCE.md`; `demo_data/PROVENANCE.md` lists what was taken from where, with checksums.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import tempfile
from pathlib import Path

# (source path under the data folder, destination under demo_data, number of lines kept or None for all)
SUBSETS = [
    ("vocab/bert-base-uncased-vocab.txt", "vocab.txt", None),
    ("wikitext-2-raw/wiki.valid.raw", "wikitext-2-raw/wiki.demo.raw", 600),
    ("glue/RTE/train.tsv", "glue/RTE/train.tsv", 401),
    ("glue/RTE/dev.tsv", "glue/RTE/dev.tsv", 101),
    ("glue/SST-2/train.tsv", "glue/SST-2/train.tsv", 801),
    ("glue/SST-2/dev.tsv", "glue/SST-2/dev.tsv", 201),
    ("glue/MRPC/train.tsv", "glue/MRPC/train.tsv", 401),
    ("glue/MRPC/dev.tsv", "glue/MRPC/dev.tsv", 101),
]


def copy_prefix(source: Path, destination: Path, lines: int | None) -> None:
    destination.parent.mkdir(parents=True, exist_ok=True)
    with open(source, "rb") as reader, tempfile.NamedTemporaryFile("wb", dir=destination.parent, delete=False) as out:
        if lines is None:
            shutil.copyfileobj(reader, out)
        else:
            for _, line in zip(range(lines), reader):
                out.write(line)
    os.replace(out.name, destination)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--source", default="../shared/data")
    parser.add_argument("--output", default="demo_data")
    args = parser.parse_args()
    source, output = Path(args.source), Path(args.output)
    rows = []
    for relative_source, relative_destination, lines in SUBSETS:
        if not (source / relative_source).is_file():
            raise FileNotFoundError(f"{source / relative_source}: missing; point --source at the shared data folder")
        copy_prefix(source / relative_source, output / relative_destination, lines)
        digest = hashlib.sha256((output / relative_destination).read_bytes()).hexdigest()
        kept = "whole file" if lines is None else f"first {lines} lines"
        rows.append(f"| `{relative_destination}` | `{relative_source}` | {kept} | `{digest[:16]}…` |")
    provenance = "\n".join(
        [
            "# Provenance of `demo_data/`",
            "",
            "A small demo subset for the quickstart and the offline tests, made by `python scripts/make_demo_data.py`",
            "from the project's shared data folder. Each file is an unmodified prefix of the source file; the sources,",
            "their origin and licenses are described in that folder's `PROVENANCE.md` (BERT vocabulary: Apache-2.0;",
            "WikiText-2: CC BY-SA 3.0; GLUE tasks: their original licenses — RTE research use, SST-2 research use,",
            "MRPC Microsoft Research Paraphrase Corpus terms). GLUE files keep their header row.",
            "",
            "| file | source (under the shared `data/`) | kept | SHA-256 |",
            "|---|---|---|---|",
            *rows,
            "",
        ]
    )
    (output / "PROVENANCE.md").write_text(provenance)
    print(f"wrote {len(rows)} files under {output}")


if __name__ == "__main__":
    main()
