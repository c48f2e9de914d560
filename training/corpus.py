"""Raw text as documents of sentences: what BERT's next-sentence pairs are built from.

Two text formats, detected from the first non-blank line (or named):

- ``wikitext`` (WikiText raw): a line `` = Title = `` starts an article (one document); `` = = Section = = ``
  lines are headings and are dropped, as BERT dropped headers; every other non-blank line is a paragraph.
  WikiText writes in-word hyphens, thousands separators and decimal points as `` @-@ ``, `` @,@ ``,
  `` @.@ ``; they are joined back (``2 @,@ 000`` → ``2,000``) so the tokenizer sees ordinary text.
- ``plain``: documents separated by blank lines; each line may hold one or several sentences.

A source is a text file or, when no such file exists and the name does not look like a path, a Hub
dataset ``name`` or ``name:config`` whose ``train`` split has a ``text`` column; its rows are read as the
lines of a file. Sentences are split with a rule for edited English (a ``.``, ``!`` or ``?`` followed by
space and a capital letter); the NSP task needs segment boundaries, not linguistically exact ones.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

import datasets


logger = logging.getLogger(__name__)

TEXT_FORMATS = ("auto", "wikitext", "plain")
_ARTICLE_HEADING = re.compile(r"= (?!=).*(?<!=) =")
_SECTION_HEADING = re.compile(r"=( =)+ .*(?<!=) =( =)+")
_WIKITEXT_JOINS = {" @-@ ": "-", " @,@ ": ",", " @.@ ": "."}
_SENTENCE_BOUNDARY = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[]?\s?[A-Z])")
_FILE_SUFFIXES = (".txt", ".raw", ".tokens", ".text")
DOCUMENT_FEATURES = datasets.Features({"sentences": datasets.Sequence(datasets.Value("string"))})


def split_sentences(text: str) -> list[str]:
    """Sentences of one paragraph, stripped, none empty."""
    return [sentence.strip() for sentence in _SENTENCE_BOUNDARY.split(text) if sentence.strip()]


def join_wikitext_tokens(text: str) -> str:
    """Undo WikiText's `` @-@ `` / `` @,@ `` / `` @.@ `` escapes."""
    for escaped, joined in _WIKITEXT_JOINS.items():
        text = text.replace(escaped, joined)
    return text


def is_article_heading(line: str) -> bool:
    return _ARTICLE_HEADING.fullmatch(line.strip()) is not None


def iter_documents(lines: Iterable[str], text_format: str) -> Iterator[list[str]]:
    """Documents (lists of sentences) from the lines of one source; ``text_format`` is ``wikitext`` or ``plain``.

    A document without any sentence (a WikiText article that is only a title) yields nothing.
    """
    if text_format not in ("wikitext", "plain"):
        raise ValueError(f"text_format: expected 'wikitext' or 'plain', got {text_format!r}")
    sentences: list[str] = []
    for line in lines:
        stripped = line.strip()
        if text_format == "wikitext":
            if not stripped or _SECTION_HEADING.fullmatch(stripped):
                continue
            if _ARTICLE_HEADING.fullmatch(stripped):
                if sentences:
                    yield sentences
                sentences = []
                continue
            sentences.extend(split_sentences(join_wikitext_tokens(stripped)))
        elif stripped:
            sentences.extend(split_sentences(stripped))
        elif sentences:
            yield sentences
            sentences = []
    if sentences:
        yield sentences


def parse_source(source: str | os.PathLike) -> tuple[str, str, str | None]:
    """``("file", path, None)`` for an existing file, ``("hub", name, config)`` for a Hub dataset name.

    A missing path that looks like a file (a directory part, or a text-file suffix) is an error rather than a
    Hub lookup, so a typo in a path is reported as such.
    """
    text = os.fspath(source)
    path = Path(text)
    if path.is_file():
        return "file", text, None
    if path.exists():
        raise ValueError(f"{text}: a text source must be a file, got a directory")
    name_part = text.split(":", 1)[0]
    # Hub names are "name" or "owner/name" (optionally ":config"); anything else is meant as a path
    looks_like_path = (
        text.startswith((".", "/", "~")) or Path(name_part).suffix in _FILE_SUFFIXES or name_part.count("/") > 1
    )
    if looks_like_path:
        raise FileNotFoundError(f"text source {text}: no such file")
    name, _, config = text.partition(":")
    return "hub", name, config or None


def _source_lines(source: str, cache_dir: str | None) -> Iterator[str]:
    kind, name, config = parse_source(source)
    if kind == "file":
        with open(name, encoding="utf-8") as handle:
            yield from handle
        return
    try:
        dataset = datasets.load_dataset(name, config, split="train", cache_dir=cache_dir)
    except Exception as error:  # offline, unknown name, no train split: all end the same way for the user
        raise ValueError(
            f"text source {source!r} is not a file, and loading it as a Hub dataset failed "
            f"(offline runs need HF_DATASETS_OFFLINE unset and a cached copy): {error}"
        ) from error
    if "text" not in dataset.column_names:
        raise ValueError(f"Hub dataset {source!r}: expected a 'text' column, found {dataset.column_names}")
    yield from dataset["text"]


def detect_text_format(source: str, cache_dir: str | None = None) -> str:
    """``wikitext`` when the first non-blank line of ``source`` is an article heading, else ``plain``."""
    for line in _source_lines(source, cache_dir):
        if line.strip():
            return "wikitext" if is_article_heading(line) else "plain"
    raise ValueError(f"text source {source!r} is empty")


def _generate_documents(sources: list[str], text_formats: list[str], signatures: list, cache_dir: str | None):
    # ``signatures`` (file sizes and modification times) only enter the dataset fingerprint, so that an
    # edited file is read again instead of being served from the cache.
    for source, text_format in zip(sources, text_formats):
        for sentences in iter_documents(_source_lines(source, cache_dir), text_format):
            yield {"sentences": sentences}


def read_documents(
    sources: str | os.PathLike | list[str | os.PathLike], text_format: str = "auto", cache_dir: str | None = None
) -> datasets.Dataset:
    """All documents of ``sources`` as a `datasets.Dataset` with one column, ``sentences`` (a list of str).

    Streams each source line by line into the Arrow cache, so corpora larger than memory work; the result is
    cached under ``cache_dir`` and reused while the files are unchanged.
    """
    if text_format not in TEXT_FORMATS:
        raise ValueError(f"text_format: expected one of {TEXT_FORMATS}, got {text_format!r}")
    sources = [os.fspath(source) for source in ([sources] if isinstance(sources, (str, os.PathLike)) else sources)]
    if not sources:
        raise ValueError("sources: expected at least one text file or Hub dataset name")
    formats = [detect_text_format(source, cache_dir) if text_format == "auto" else text_format for source in sources]
    signatures = []
    for source in sources:
        kind, name, config = parse_source(source)
        stat = Path(name).stat() if kind == "file" else None
        signatures.append([str(Path(name).resolve()), stat.st_size, stat.st_mtime_ns] if stat else [name, config])
    documents = datasets.Dataset.from_generator(
        _generate_documents,
        features=DOCUMENT_FEATURES,
        gen_kwargs={"sources": sources, "text_formats": formats, "signatures": signatures, "cache_dir": cache_dir},
        cache_dir=cache_dir,
    )
    if len(documents) == 0:
        raise ValueError(f"no sentences found in {sources}")
    logger.info("read %d documents from %s (formats %s)", len(documents), sources, formats)
    return documents
