"""Import files read in chunks: a CSV file (UTF-8 with or without a byte-order mark, LF or CRLF, a header row
naming the columns in any order) or a Parquet file (its record batches), each chunk as text with its row numbers.

Memory stays flat: the file is checked and hashed in one streaming pass (blocks of 1 MiB), then read a chunk at
a time (`pandas.read_csv(chunksize=…)`, `pyarrow.parquet.ParquetFile.iter_batches`), only the columns needed.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from carepath.quality import ROW

FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}
_BLOCK = 1 << 20


class ImportFileError(ValueError):
    """The file cannot be imported at all: missing, unreadable, of another format, or without the columns."""


@dataclass(frozen=True)
class SourceFile:
    """A file about to be imported: where it is, what it is, and where its required columns are."""

    path: str
    name: str
    sha256: str
    format: str  # csv, parquet
    rows: int | None  # Parquet: exact; CSV: lines after the header (a quoted value may span lines)
    columns: dict[str, str]  # required column → the file's spelling of it


def inspect_file(path: str | Path, *, columns: Sequence[str], formats: Sequence[str]) -> SourceFile:
    """Check the file can be imported (exists, format, encoding, header) and hash it, without loading it."""
    p = Path(path)
    fmt = FORMATS.get(p.suffix.lower())
    if fmt is None or fmt not in formats:
        allowed = " or ".join(f".{f}" for f in formats)
        raise ImportFileError(f"{p.name}: unsupported file type {p.suffix or '(none)'!r}: expected {allowed}")
    if not p.is_file():
        raise ImportFileError(f"{p}: no such file")
    try:
        if fmt == "csv":
            digest, lines = _hash_csv(p)
            header = _csv_header(p)
            _check_csv(p)
            rows = max(lines - 1, 0)
        else:
            import pyarrow.parquet as pq

            digest, _ = _hash(p)
            meta = pq.ParquetFile(p)
            header, rows = meta.schema_arrow.names, meta.metadata.num_rows
    except UnicodeDecodeError as exc:
        raise ImportFileError(f"{p.name}: not UTF-8 text (byte {exc.start}: {exc.reason})") from exc
    except OSError as exc:
        raise ImportFileError(f"{p.name}: cannot be read: {exc.strerror or exc}") from exc
    except Exception as exc:  # pyarrow's errors for a file that is not Parquet
        if fmt == "parquet":
            raise ImportFileError(f"{p.name}: not a Parquet file ({exc})") from exc
        raise
    return SourceFile(str(p), p.name, digest, fmt, rows, _match_header(p.name, header, columns))


def _hash(p: Path, *, check_text: bool = False) -> tuple[str, int]:
    """The file's sha256 and its number of line feeds; with `check_text`, fails unless it is UTF-8."""
    sha, lines = hashlib.sha256(), 0
    decoder = codecs.getincrementaldecoder("utf-8")() if check_text else None
    with p.open("rb") as f:
        while block := f.read(_BLOCK):
            sha.update(block)
            lines += block.count(b"\n")
            if decoder:
                decoder.decode(block)
            last = block
    if decoder:
        decoder.decode(b"", final=True)
    if check_text and p.stat().st_size and not last.endswith(b"\n"):
        lines += 1  # the last line has no line feed
    return sha.hexdigest(), lines


def _hash_csv(p: Path) -> tuple[str, int]:
    return _hash(p, check_text=True)


def _csv_header(p: Path) -> list[str]:
    with p.open("r", encoding="utf-8-sig", newline="") as f:
        header = next(csv.reader(io.StringIO(f.readline())), None)
    if not header:
        raise ImportFileError(f"{p.name}: empty file (a header row naming the columns is needed)")
    return header


def _check_csv(p: Path) -> None:
    """Read every record once (RFC 4180, strictly): a file the chunked reader would stop inside (a quote
    never closed, text after a closing quote) is refused whole here, before any chunk is loaded."""
    with p.open("r", encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f, strict=True)
        try:
            for _ in reader:
                pass
        except csv.Error as exc:
            raise ImportFileError(
                f"{p.name}: not a readable CSV file (record ending on line {reader.line_num}: {exc})"
            ) from exc


def _match_header(name: str, header: Sequence[str], columns: Sequence[str]) -> dict[str, str]:
    """Each required column's spelling in the file (compared trimmed and case-insensitively)."""
    found: dict[str, list[str]] = {}
    for h in header:
        found.setdefault(h.strip().lower(), []).append(h)
    missing = [c for c in columns if c not in found]
    if missing:
        raise ImportFileError(
            f"{name}: missing column(s) {', '.join(missing)}; the header must name {', '.join(columns)} "
            f"(in any order); found {', '.join(h.strip() for h in header) or 'nothing'}"
        )
    twice = [c for c in columns if len(found[c]) > 1]
    if twice:
        raise ImportFileError(f"{name}: column(s) named twice in the header: {', '.join(twice)}")
    return {c: found[c][0] for c in columns}


def read_chunks(source: SourceFile, rows: int) -> Iterator[pd.DataFrame]:
    """The required columns, `rows` at a time, as text ("" for a missing value), with `_row`: the row number a
    spreadsheet shows for a CSV record (the header is row 1, so the first record is row 2), the record's number
    from 1 in a Parquet file."""
    required = list(source.columns)
    first = 2 if source.format == "csv" else 1
    for chunk in _csv_chunks(source, rows) if source.format == "csv" else _parquet_chunks(source, rows):
        if chunk.empty:  # a file with a header and no records: nothing to validate or load
            continue
        chunk = chunk[required]
        chunk.index = pd.RangeIndex(first, first + len(chunk))
        chunk[ROW] = chunk.index
        first += len(chunk)
        yield chunk


def _csv_chunks(source: SourceFile, rows: int) -> Iterator[pd.DataFrame]:
    spelling = {v: k for k, v in source.columns.items()}
    reader = pd.read_csv(
        source.path,
        encoding="utf-8-sig",
        dtype=str,
        keep_default_na=False,  # "NA", "null", "" are text: the suite decides what they mean
        na_filter=False,
        usecols=list(spelling),
        chunksize=rows,
    )
    with reader:
        for chunk in reader:
            yield chunk.rename(columns=spelling).fillna("")


def _parquet_chunks(source: SourceFile, rows: int) -> Iterator[pd.DataFrame]:
    import pyarrow.parquet as pq

    spelling = {v: k for k, v in source.columns.items()}
    for batch in pq.ParquetFile(source.path).iter_batches(batch_size=rows, columns=list(spelling)):
        yield pd.DataFrame(
            {
                spelling[name]: [_text(v) for v in batch.column(name).to_pylist()]
                for name in batch.schema.names
            }
        )


def _text(value: Any) -> str:
    """A Parquet value as a CSV export would write it (a whole float as an integer, times in ISO 8601)."""
    if value is None:
        return ""
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)
