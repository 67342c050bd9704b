"""The compression of every array spd writes: Zstandard, then a CRC32C of the stored bytes.

Zarr's `crc32c` codec (part of the Zarr v3 core spec) appends a checksum to each chunk and checks
it on every read, so a flipped byte fails the read that touches it instead of returning wrong
numbers. Schema 2 and later.
"""

from __future__ import annotations

from typing import Final

from zarr.codecs import Crc32cCodec, ZstdCodec

CHECKED_COMPRESSORS: Final = (ZstdCodec(level=0), Crc32cCodec())
