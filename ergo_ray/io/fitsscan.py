"""A fast reader for plain FITS image files held in memory.

The survey readers spend most of their time in ``astropy.io.fits``'s generic machinery
(card objects, configuration look-ups, HDU classes) rather than in reading pixels.
Cutout files are small and simple: a few uncompressed 2-D image HDUs. :func:`scan`
parses such a file's headers directly from the bytes, keeps each keyword's value text
and parses it only when asked for, and views each HDU's pixels with
:func:`numpy.frombuffer`, scaled exactly as astropy scales them (BSCALE, BZERO, BLANK,
the unsigned-integer convention), so the arrays are bit-identical to astropy's.

Anything outside that simple shape — a tile-compressed (``ZIMAGE``) or table HDU, random
groups, a header that is not plain ASCII or has no ``END``, long-string ``CONTINUE``
values of a structural keyword, a size that does not add up to the bytes given — makes
:func:`scan` return None, and the caller reads the file with astropy instead, which also
gives the usual error messages for damaged files.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from typing import Any

import numpy as np

__all__ = ["ScanHdu", "ScanHeader", "scan"]

_BLOCK = 2880
_CARD = 80
_END_CARD = b"END" + b" " * 77
_BITPIX_DTYPE = {8: ">u1", 16: ">i2", 32: ">i4", 64: ">i8", -32: ">f4", -64: ">f8"}
_MISSING = object()
#: A quoted FITS string: quotes doubled inside, the closing quote required (possessive,
#: so that a doubled quote at the end is not taken back to close the string).
_STRING = re.compile(r"'((?:[^']|'')*+)'")


def _parse_value(text: str) -> Any:
    """Parse a card's value field as astropy does (string, bool, int, float)."""
    s = text.lstrip()
    if s[:1] == "'":
        m = _STRING.match(s)
        if m is None:
            raise ValueError("unterminated string")
        return m.group(1).replace("''", "'").rstrip()
    token = s.partition("/")[0].strip()
    if token == "T":
        return True
    if token == "F":
        return False
    if not token:
        return None
    try:
        return int(token)
    except ValueError:
        return float(token.replace("D", "E").replace("d", "e"))


class ScanHeader:
    """The keyword/value cards of one HDU, values parsed on first access.

    Behaves like the read-only part of :class:`astropy.io.fits.Header` the readers use:
    ``get``, ``keys``, ``items``, ``in`` and ``[]``. Keywords are upper-case;
    ``HIERARCH`` keywords appear without the prefix, as astropy shows them.
    """

    __slots__ = ("_parsed", "_raw")

    def __init__(self, raw: dict[str, str]) -> None:
        self._raw = raw
        self._parsed: dict[str, Any] = {}

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key.upper() in self._raw

    def __getitem__(self, key: str) -> Any:
        value = self.get(key, _MISSING)
        if value is _MISSING:
            raise KeyError(key)
        return value

    def get(self, key: str, default: Any = None) -> Any:
        """Return the value of ``key`` or ``default`` when the header lacks it."""
        parsed = self._parsed
        if key in parsed:
            return parsed[key]
        k = key.upper()
        if k in parsed:
            return parsed[k]
        text = self._raw.get(k)
        if text is None:
            return default
        try:
            value = _parse_value(text)
        except ValueError:
            value = text.strip()  # astropy would warn and keep the text as well
        parsed[k] = value
        return value

    def keys(self) -> Iterator[str]:
        """Yield every keyword that has a value, in header order."""
        yield from self._raw

    def items(self) -> Iterator[tuple[str, Any]]:
        """Yield ``(keyword, value)`` for every keyword with a value."""
        for k in self._raw:
            yield k, self.get(k)


class ScanHdu:
    """One image HDU found by :func:`scan`: ``name``, ``header`` and ``data``."""

    __slots__ = ("data", "header", "name")

    def __init__(self, name: str, header: ScanHeader, data: np.ndarray | None) -> None:
        self.name = name
        self.header = header
        self.data = data


def _header_cards(buf: bytes, pos: int) -> tuple[dict[str, str], int] | None:
    """Parse the header starting at ``pos``; return (cards, data offset) or None."""
    raw: dict[str, str] = {}
    n = len(buf)
    while True:
        if pos + _BLOCK > n:
            return None
        block = buf[pos : pos + _BLOCK]
        pos += _BLOCK
        if not block.isascii():
            return None
        text = block.decode("ascii")
        for i in range(0, _BLOCK, _CARD):
            card = text[i : i + _CARD]
            key = card[:8]
            if card[8:10] == "= ":
                raw.setdefault(key.rstrip().upper(), card[10:])
            elif key == "END     " and not card[8:].strip():
                return raw, pos
            elif key == "HIERARCH":
                name, eq, value = card[9:].partition("=")
                if eq:
                    raw.setdefault(name.strip().upper(), value)
            elif key == "CONTINUE":
                return None  # long strings: leave them to astropy


def _scale(raw: np.ndarray, bitpix: int, hdr: ScanHeader) -> np.ndarray | None:
    """Apply BSCALE/BZERO/BLANK as astropy's ``_ImageBaseHDU._scale_data`` does."""
    bscale, bzero, blank = hdr.get("BSCALE", 1), hdr.get("BZERO", 0), hdr.get("BLANK")
    for v in (bscale, bzero):
        if isinstance(v, bool) or not isinstance(v, int | float):
            return None
    if blank is not None and (
        bitpix < 0 or isinstance(blank, bool) or not isinstance(blank, int)
    ):
        return None  # astropy warns and ignores it: leave that to astropy
    if bzero == 0 and bscale == 1 and blank is None:
        return raw
    new_dtype: np.dtype | None = None
    if bscale == 1:
        if bitpix == 8 and bzero == -128:
            new_dtype = np.dtype("int8")
        for bits, dt in ((16, "uint16"), (32, "uint32"), (64, "uint64")):
            if bitpix == bits and bzero == 1 << (bits - 1):
                data = np.array(raw, dtype=dt)
                data -= np.uint64(1 << (bits - 1))
                return data
    if new_dtype is None and bitpix > 0:
        new_dtype = np.dtype("float64" if bitpix > 16 else "float32")
    blanks = None
    if blank is not None and bitpix > 0:
        blanks = raw.flat == blank
        if blanks.sum() < len(blanks) / 8:
            blanks = np.where(blanks)
    data = np.array(raw, dtype=new_dtype) if new_dtype is not None else raw.copy()
    if bscale != 1:
        np.multiply(data, bscale, data)
    if bzero != 0:
        data += bzero
    if blank:
        data.flat[blanks] = np.nan
    return data


def scan(buf: bytes) -> list[ScanHdu] | None:
    """Read every HDU of an uncompressed FITS file of images held in ``buf``.

    Parameters
    ----------
    buf : bytes
        The whole, decompressed file (starting with ``SIMPLE``).

    Returns
    -------
    list of ScanHdu or None
        One entry per HDU (``name`` is ``EXTNAME`` upper-cased, ``PRIMARY`` for the
        first HDU without one), each ``data`` a native-byte-order array shaped as
        astropy shapes it (None for an HDU without data); None when the file is not
        of the simple kind this reader handles (see the module's description).
    """
    hdus: list[ScanHdu] = []
    pos, n = 0, len(buf)
    while pos < n:
        parsed = _header_cards(buf, pos)
        if parsed is None:
            return None
        raw, data_pos = parsed
        hdr = ScanHeader(raw)
        first = not hdus
        kind = hdr.get("SIMPLE") if first else hdr.get("XTENSION")
        if (first and kind is not True) or (not first and kind != "IMAGE"):
            return None
        if hdr.get("GROUPS") is True or "ZIMAGE" in hdr:
            return None
        bitpix, naxis = hdr.get("BITPIX"), hdr.get("NAXIS")
        if (
            bitpix not in _BITPIX_DTYPE
            or not isinstance(naxis, int)
            or not 0 <= naxis <= 999
        ):
            return None
        dims = [hdr.get(f"NAXIS{k}") for k in range(1, naxis + 1)]
        if not all(
            isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in dims
        ):
            return None
        pcount, gcount = hdr.get("PCOUNT", 0), hdr.get("GCOUNT", 1)
        if pcount != 0 or gcount != 1:
            return None
        count = math.prod(dims) if naxis else 0
        nbytes = count * abs(bitpix) // 8
        padded = -(-nbytes // _BLOCK) * _BLOCK
        if data_pos + padded > n:
            return None
        data = None
        if count:
            raw_arr = np.frombuffer(
                buf, dtype=_BITPIX_DTYPE[bitpix], count=count, offset=data_pos
            )
            raw_arr = raw_arr.reshape(tuple(reversed(dims)))
            data = _scale(raw_arr, bitpix, hdr)
            if data is None:
                return None
            if not data.flags.writeable or data.dtype.byteorder == ">":
                data = data.astype(data.dtype.newbyteorder("="))
        name = hdr.get("EXTNAME", "PRIMARY" if first else "")
        if not isinstance(name, str):
            return None
        hdus.append(ScanHdu(name.strip().upper(), hdr, data))
        pos = data_pos + padded
    return hdus
