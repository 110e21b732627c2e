"""The data catalog: the user's imported bars next to the bundled ones.

Each imported symbol is one Parquet file under ``<data_dir>/bars/``. Its metadata record
(symbol, timeframe, first, last, count, source file, import time) lives in the same file's
key-value metadata, so one ``os.replace`` swaps data and metadata together: an import either
fully happens or leaves nothing behind.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal
from urllib.parse import quote, unquote

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ffe.data.bundled import BUNDLED_SYMBOLS, BundledBarSource
from ffe.data.files import read_bars_file
from ffe.data.source import unknown_symbol
from ffe.data.validate import validate_bars
from ffe.domain import DataError, Timeframe

_SYMBOL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,63}")
_METADATA_KEY = b"ffe.bars"
_SUFFIX = ".parquet"
_TEMP_PREFIX = ".importing-"


@dataclass(frozen=True, slots=True)
class CatalogEntry:
    """One symbol of the catalog, as ``ffe data list`` shows it."""

    symbol: str
    timeframe: Timeframe
    first: datetime
    last: datetime
    count: int
    source: Literal["bundled", "imported"]
    source_file: str | None = None
    imported_at: datetime | None = None
    feed: str | None = None  # the live feed it was fetched from (``ffe data fetch``)


@dataclass(frozen=True, slots=True)
class ImportSummary:
    """What an import stored."""

    symbol: str
    timeframe: Timeframe
    first: datetime
    last: datetime
    count: int
    source_file: str
    replaced: bool

    def __str__(self) -> str:
        verb = "replaced" if self.replaced else "imported"
        return (
            f"{verb} {self.symbol}: {self.count:,} {self.timeframe} bars from "
            f"{self.first:%Y-%m-%d} to {self.last:%Y-%m-%d} ({self.source_file})"
        )


class DataCatalog:
    """A BarSource over the bars imported into ``data_dir`` plus the bundled symbols."""

    def __init__(self, data_dir: Path) -> None:
        self._bars_dir = data_dir / "bars"
        self._bundled = BundledBarSource()

    @property
    def bars_dir(self) -> Path:
        """Where the imported Parquet files live."""
        return self._bars_dir

    def symbols(self) -> list[str]:
        """Bundled and imported symbols, sorted."""
        return sorted([*self._bundled.symbols(), *self._imported()])

    def timeframe(self, symbol: str) -> Timeframe:
        """The timeframe the symbol was imported (or ships) with."""
        if symbol in BUNDLED_SYMBOLS:
            return self._bundled.timeframe(symbol)
        return Timeframe.parse(self._metadata(symbol)["timeframe"])

    def load(self, symbol: str) -> pd.DataFrame:
        """The validated bar frame of ``symbol``."""
        if symbol in BUNDLED_SYMBOLS:
            return self._bundled.load(symbol)
        timeframe = self.timeframe(symbol)
        path = self._path(symbol)
        try:
            frame = pd.read_parquet(path)
        except (pa.ArrowException, OSError) as exc:
            raise DataError(f"cannot read imported bars ({exc})", path=str(path)) from None
        return validate_bars(frame, source=str(path), timeframe=timeframe)

    def list_entries(self) -> list[CatalogEntry]:
        """Every symbol with its timeframe, first and last bar, bar count and origin."""
        entries = [_bundled_entry(self._bundled, symbol) for symbol in self._bundled.symbols()]
        entries += [_imported_entry(self._metadata(symbol)) for symbol in self._imported()]
        return sorted(entries, key=lambda entry: entry.symbol)

    def import_file(
        self, path: Path, symbol: str, timeframe: Timeframe | str = "1d", *, replace: bool = False
    ) -> ImportSummary:
        """Validate ``path`` (CSV or Parquet) fully, then store it as ``symbol``.

        Refuses bundled names, and existing symbols unless ``replace``. On any error the
        catalog is left exactly as it was.
        """
        if isinstance(timeframe, str):
            timeframe = Timeframe.parse(timeframe)
        exists = self._check_new_symbol(symbol, replace=replace)
        frame = read_bars_file(path, timeframe=timeframe)
        index = pd.DatetimeIndex(frame.index)
        summary = ImportSummary(
            symbol=symbol,
            timeframe=timeframe,
            first=index[0].to_pydatetime(),
            last=index[-1].to_pydatetime(),
            count=len(frame),
            source_file=path.name,
            replaced=exists,
        )
        _write_atomically(_to_table(frame, summary), self._path(symbol))
        return summary

    def fetched_entry(self, symbol: str) -> CatalogEntry | None:
        """The entry of ``symbol`` if it is imported or fetched; None if the catalog has no
        such symbol. DataError for a name bars may not be stored under (a bundled dataset's,
        one not allowed, one differing only in case from a stored one)."""
        if not self._check_new_symbol(symbol, replace=True):
            return None
        return _imported_entry(self._metadata(symbol))

    def store_fetched(
        self, frame: pd.DataFrame, symbol: str, timeframe: Timeframe, *, feed: str
    ) -> ImportSummary:
        """Validate ``frame`` whole, then store it as ``symbol``, fetched from ``feed``: a new
        symbol, or the same feed's bars of it (``frame`` replaces them: the caller merged).
        On any error the catalog is left exactly as it was."""
        existing = self._check_new_symbol(symbol, replace=True)
        if existing:
            entry = _imported_entry(self._metadata(symbol))
            if entry.feed != feed or entry.timeframe != timeframe:
                raise DataError(
                    f"symbol {symbol!r} holds {entry.timeframe} bars from "
                    f"{entry.feed or entry.source_file}: store {timeframe} bars of {feed} "
                    "under another name (--as NAME)"
                )
        frame = validate_bars(frame, source=f"{feed} {symbol}", timeframe=timeframe)
        index = pd.DatetimeIndex(frame.index)
        summary = ImportSummary(
            symbol=symbol,
            timeframe=timeframe,
            first=index[0].to_pydatetime(),
            last=index[-1].to_pydatetime(),
            count=len(frame),
            source_file=feed,
            replaced=existing,
        )
        _write_atomically(_to_table(frame, summary, feed=feed), self._path(symbol))
        return summary

    def _check_new_symbol(self, symbol: str, *, replace: bool) -> bool:
        """Refuse a symbol that may not be imported; say whether it already exists."""
        if not _SYMBOL.fullmatch(symbol):
            raise DataError(
                f"symbol {symbol!r} is not allowed: use up to 64 letters, digits and . _ - /, "
                "starting with a letter or digit (like AAPL or BTC/USDT)"
            )
        if symbol.upper() in BUNDLED_SYMBOLS:
            raise DataError(
                f"symbol {symbol!r} is a bundled dataset and cannot be replaced: "
                "import under another name"
            )
        # File names compare without case on some systems, so symbols must too.
        clash = [name for name in self._imported() if name.lower() == symbol.lower()]
        if clash and clash[0] != symbol:
            raise DataError(f"symbol {symbol!r} differs only in case from {clash[0]!r}")
        if clash and not replace:
            raise DataError(
                f"symbol {symbol!r} is already imported: pass --replace to overwrite it"
            )
        return bool(clash)

    def _imported(self) -> list[str]:
        if not self._bars_dir.is_dir():
            return []
        return sorted(
            unquote(path.name.removesuffix(_SUFFIX))
            for path in self._bars_dir.glob(f"*{_SUFFIX}")
            if not path.name.startswith(".")
        )

    def _path(self, symbol: str) -> Path:
        # Percent-encoding keeps names like BTC/USDT in one file and distinct from BTC_USDT.
        return self._bars_dir / f"{quote(symbol, safe='')}{_SUFFIX}"

    def _metadata(self, symbol: str) -> dict[str, str]:
        path = self._path(symbol)
        if symbol not in self._imported():
            raise unknown_symbol(symbol, self.symbols())
        try:
            raw = (pq.read_schema(path).metadata or {})[_METADATA_KEY]
            record: dict[str, str] = json.loads(raw)
        except (pa.ArrowException, OSError, KeyError, ValueError) as exc:
            raise DataError(
                f"not a bar file of this catalog ({exc!r}): re-import the symbol with --replace",
                path=str(path),
            ) from None
        return record


def _to_table(frame: pd.DataFrame, summary: ImportSummary, feed: str | None = None) -> pa.Table:
    record = {
        "symbol": summary.symbol,
        "timeframe": str(summary.timeframe),
        "first": summary.first.isoformat(),
        "last": summary.last.isoformat(),
        "count": str(summary.count),
        "source_file": summary.source_file,
        "imported_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    if feed is not None:
        record["feed"] = feed
    table = pa.Table.from_pandas(frame, preserve_index=True)
    metadata = {**(table.schema.metadata or {}), _METADATA_KEY: json.dumps(record).encode()}
    return table.replace_schema_metadata(metadata)


def _write_atomically(table: pa.Table, target: Path) -> None:
    """Write to a temp file beside ``target`` and rename it over; never leave the temp."""
    try:
        target.parent.parent.mkdir(mode=0o700, parents=True, exist_ok=True)  # the data dir
        target.parent.mkdir(parents=True, exist_ok=True)
        handle, temp_name = tempfile.mkstemp(dir=target.parent, prefix=_TEMP_PREFIX)
    except OSError as exc:
        raise DataError(f"cannot write to the data directory: {exc}", path=str(target)) from None
    temp = Path(temp_name)
    try:
        with os.fdopen(handle, "wb") as stream:
            pq.write_table(table, stream)
            stream.flush()
            os.fsync(stream.fileno())  # the data is on disk before the rename makes it visible
        os.replace(temp, target)
    except BaseException as exc:
        temp.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise DataError(f"cannot write imported bars: {exc}", path=str(target)) from None
        raise


def _bundled_entry(source: BundledBarSource, symbol: str) -> CatalogEntry:
    index = pd.DatetimeIndex(source.load(symbol).index)
    return CatalogEntry(
        symbol=symbol,
        timeframe=source.timeframe(symbol),
        first=index[0].to_pydatetime(),
        last=index[-1].to_pydatetime(),
        count=len(index),
        source="bundled",
    )


def _imported_entry(record: dict[str, str]) -> CatalogEntry:
    return CatalogEntry(
        symbol=record["symbol"],
        timeframe=Timeframe.parse(record["timeframe"]),
        first=datetime.fromisoformat(record["first"]),
        last=datetime.fromisoformat(record["last"]),
        count=int(record["count"]),
        source="imported",
        source_file=record["source_file"],
        imported_at=datetime.fromisoformat(record["imported_at"]),
        feed=record.get("feed"),
    )
