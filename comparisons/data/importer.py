"""Import real TLC yellow-taxi files (parquet or CSV, 2009 to now) into the canonical layout.

Policy, stated once:

- Columns are matched by name, ignoring case, spaces and underscores, through ``ALIASES``
  (TLC CamelCase, snake_case exports, the 2009-2014 names such as ``Trip_Pickup_DateTime``,
  ``Fare_Amt``, ``surcharge``). A file must have ``REQUIRED`` plus zone ids or coordinates;
  otherwise :class:`DataError` names the file, the missing and the unrecognised columns.
  Every file is checked before anything is written. Unknown columns are kept out and
  reported. Missing optional columns are null; so are zone ids in coordinate-era files.
- Values may be typed or text, integers written as floats (``2.0``), empty (null), or the old
  text codes (``CMT``/``VTS``/``DDS`` vendors = 1/2/3; ``CSH``, ``Credit``, ``No Charge`` … for
  payment_type). A row with a value that cannot be parsed, or with no pickup time, is
  rejected: written nowhere, counted per file with its reason and a few examples. CSV lines
  with the wrong number of fields are rejected the same way. ``strict=True`` makes any
  rejected row an error, and an import that keeps no row at all fails, naming each file and
  its top reasons. Either way nothing is written: the dataset is written whole or not at
  all (see :mod:`comparisons.data.manifest`). Dirty but parseable values (negative fares,
  dropoff before pickup) are kept as they are. Timestamps become naive ``timestamp[us]`` (a
  zoned column is read as its wall-clock time).
- Output is one file per pickup (year, month), whatever input a row came from; within a
  month, rows keep their input order. ``trip_id`` is the record's position among all records
  read by this import (inputs in the order given), so it is unique and stable.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import shlex
import sys
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from taskbench.comparisons.data.manifest import Manifest, staged_dataset, write_dataset
from taskbench.comparisons.data.schema import (
    COORDINATE_COLUMNS,
    MONEY_COLUMNS,
    ROW_GROUP_ROWS,
    TRIPS_DIR,
    TRIPS_SCHEMA,
    DataError,
    parquet_writer,
    trip_file_name,
)
from taskbench.comparisons.data.zones import read_zone_lookup

# Canonical column -> accepted source names, compared after _normalise().
ALIASES: dict[str, tuple[str, ...]] = {
    "VendorID": ("VendorID", "vendor_id", "vendor_name"),
    "tpep_pickup_datetime": ("tpep_pickup_datetime", "pickup_datetime", "Trip_Pickup_DateTime"),
    "tpep_dropoff_datetime": (
        "tpep_dropoff_datetime",
        "dropoff_datetime",
        "Trip_Dropoff_DateTime",
    ),
    "passenger_count": ("passenger_count",),
    "trip_distance": ("trip_distance",),
    "RatecodeID": ("RatecodeID", "rate_code", "rate_code_id"),
    "store_and_fwd_flag": ("store_and_fwd_flag", "store_and_forward"),
    "PULocationID": ("PULocationID", "pickup_location_id"),
    "DOLocationID": ("DOLocationID", "dropoff_location_id"),
    "payment_type": ("payment_type",),
    "fare_amount": ("fare_amount", "Fare_Amt"),
    "extra": ("extra", "surcharge"),
    "mta_tax": ("mta_tax",),
    "tip_amount": ("tip_amount", "Tip_Amt"),
    "tolls_amount": ("tolls_amount", "Tolls_Amt"),
    "improvement_surcharge": ("improvement_surcharge",),
    "total_amount": ("total_amount", "Total_Amt"),
    "congestion_surcharge": ("congestion_surcharge",),
    "airport_fee": ("airport_fee",),
    "pickup_longitude": ("pickup_longitude", "Start_Lon"),
    "pickup_latitude": ("pickup_latitude", "Start_Lat"),
    "dropoff_longitude": ("dropoff_longitude", "End_Lon"),
    "dropoff_latitude": ("dropoff_latitude", "End_Lat"),
}
REQUIRED: tuple[str, ...] = (
    "tpep_pickup_datetime",
    "tpep_dropoff_datetime",
    "passenger_count",
    "trip_distance",
    "payment_type",
    "fare_amount",
    "total_amount",
)
ZONE_ID_COLUMNS: tuple[str, ...] = ("PULocationID", "DOLocationID")
VENDOR_CODES: dict[str, int] = {"CMT": 1, "VTS": 2, "DDS": 3}
PAYMENT_CODES: dict[str, int] = {
    **dict.fromkeys(("CRD", "CRE", "CREDIT", "CREDIT CARD"), 1),
    **dict.fromkeys(("CSH", "CAS", "CASH"), 2),
    **dict.fromkeys(("NOC", "NO CHARGE", "NO"), 3),
    **dict.fromkeys(("DIS", "DISPUTE"), 4),
    **dict.fromkeys(("UNK", "UNKNOWN", "NA"), 5),
    **dict.fromkeys(("VOIDED", "VOIDED TRIP"), 6),
}
FLAG_CODES: dict[str, str] = {
    **dict.fromkeys(("Y", "1", "1.0", "TRUE", "T"), "Y"),
    **dict.fromkeys(("N", "0", "0.0", "FALSE", "F"), "N"),
}
TIMESTAMP_FORMATS: tuple[str, ...] = (
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%dT%H:%M:%S",
    "%m/%d/%Y %I:%M:%S %p",
    "%m/%d/%Y %H:%M:%S",
    "%Y-%m-%d %H:%M",
    "%m/%d/%Y %H:%M",
)
MALFORMED_LINE = "malformed CSV line (wrong number of fields)"
_NUMBER = r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$"
_INT32 = (-(2**31), 2**31 - 1)
_BATCH_ROWS = 256 * 1024
_CSV_BLOCK_BYTES = 16 << 20
_EXAMPLES_PER_REASON = 3
_INT_COLUMNS = {f.name for f in TRIPS_SCHEMA if pa.types.is_integer(f.type)} - {"trip_id"}
_TIMESTAMP_COLUMNS = {f.name for f in TRIPS_SCHEMA if pa.types.is_timestamp(f.type)}


def _normalise(name: str) -> str:
    return "".join(ch for ch in name.strip().lower() if ch.isalnum())


_BY_NORMAL_NAME = {_normalise(a): canon for canon, names in ALIASES.items() for a in names}


@dataclass
class FileReport:
    """What happened to one input file."""

    path: str
    format: str
    columns: dict[str, str]  # source column -> canonical column
    unknown_columns: list[str]
    rows_in: int = 0
    rows_written: int = 0
    rows_rejected: int = 0
    reasons: dict[str, int] = field(default_factory=dict)  # reason -> rejected rows
    # reason -> a few {"row" (1-based record number), "column", "value"}; {"line", "value"}
    # for malformed CSV lines ("line" is None when the parser cannot tell).
    examples: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    months: dict[str, int] = field(default_factory=dict)  # "YYYY-MM" -> rows written

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data."""
        return asdict(self)

    def summary(self) -> str:
        """One human-readable paragraph."""
        text = (
            f"{self.path}: {self.rows_in:,} rows in, {self.rows_written:,} written, "
            f"{self.rows_rejected:,} rejected"
        )
        if self.reasons:
            text += " (" + "; ".join(f"{r}: {n:,}" for r, n in self.reasons.items()) + ")"
        if self.unknown_columns:
            text += f"; unknown columns kept out: {', '.join(self.unknown_columns)}"
        return text


@dataclass
class ImportReport:
    """The per-file reports and the manifest of the written dataset."""

    files: list[FileReport]
    manifest: Manifest

    @property
    def rows_rejected(self) -> int:
        """Rejected rows over all files."""
        return sum(f.rows_rejected for f in self.files)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data."""
        return {"files": [f.to_dict() for f in self.files], "manifest": self.manifest.to_dict()}


@dataclass
class _Source:
    path: Path
    format: str  # "parquet" or "csv"
    names: list[str]  # the file's column names, verbatim
    mapping: dict[str, str]  # canonical -> source column
    unknown: list[str]
    rows: int | None  # known up front for parquet

    def report(self) -> FileReport:
        columns = {source: canonical for canonical, source in self.mapping.items()}
        return FileReport(str(self.path), self.format, columns, self.unknown)


def inspect_file(path: str | os.PathLike[str]) -> FileReport:
    """Check one file's columns without importing it; raise :class:`DataError` if unusable."""
    return _open_source(Path(path)).report()


def import_files(
    paths: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    *,
    zones: str | os.PathLike[str] | None = None,
    strict: bool = False,
    overwrite: bool = False,
    progress: bool = False,
    created_by: str | None = None,
) -> ImportReport:
    """Import TLC files into a canonical dataset at ``out``; see the module policy."""
    paths = list(paths)
    sources = [_open_source(p) for p in _expand(paths)]
    output_trips = (Path(out) / TRIPS_DIR).resolve()
    for source in sources:
        if source.path.resolve().parent == output_trips:
            raise DataError(f"{source.path}: is part of the output dataset; choose another --out")
    zone_table = read_zone_lookup(zones) if zones is not None else None
    if created_by is None:
        words = ["taskbench", "data", "import", *map(str, paths), "--out", str(Path(out))]
        words += ["--zones", str(zones)] if zones is not None else []
        created_by = shlex.join(words + (["--strict"] if strict else []))
    with staged_dataset(out, overwrite=overwrite) as staging:
        reports, file_rows = _import_all(sources, staging, strict=strict, progress=progress)
        if not file_rows:
            raise DataError(_nothing_kept(reports, out))
        manifest = write_dataset(
            staging,
            kind="imported",
            zones=zone_table,
            zones_source=None if zones is None else str(zones),
            file_rows=file_rows,
            seed=None,
            created_by=created_by,
            sources=[r.to_dict() for r in reports],
        )
    return ImportReport(reports, manifest)


def _import_all(
    sources: list[_Source], out: Path, *, strict: bool, progress: bool
) -> tuple[list[FileReport], dict[str, int]]:
    """Write every source's rows into ``out``; return the reports and {file name: rows}."""
    from tqdm import tqdm

    writers = _MonthWriters(out)
    reports: list[FileReport] = []
    total = sum(s.rows or 0 for s in sources) if all(s.rows for s in sources) else None
    bar = tqdm(total=total, unit="rows", unit_scale=True, disable=not progress, file=sys.stderr)
    next_trip_id = 0
    try:
        with bar:
            for source in sources:
                report = source.report()
                reports.append(report)
                next_trip_id = _import_one(source, report, writers, next_trip_id, bar)
                if strict and report.rows_rejected:
                    reasons = "; ".join(f"{r}: {n:,}" for r, n in report.reasons.items())
                    raise DataError(
                        f"{source.path}: {report.rows_rejected:,} rows cannot be parsed "
                        f"(strict): {reasons}; examples: {report.examples}"
                    )
        return reports, writers.close()
    except BaseException:
        writers.abort()
        raise


def _nothing_kept(reports: list[FileReport], out: str | os.PathLike[str]) -> str:
    """Why an import that kept no rows failed: each file with its top rejection reasons."""
    lines = [f"no rows kept, so nothing was written to {out}:"]
    for report in reports:
        line = f"  {report.path}: {report.rows_in:,} rows in, {report.rows_rejected:,} rejected"
        top = sorted(report.reasons.items(), key=lambda item: (-item[1], item[0]))[:3]
        if top:
            line += " (" + "; ".join(f"{reason}: {n:,}" for reason, n in top) + ")"
        lines.append(line)
    return "\n".join(lines)


def _expand(paths: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """Paths as given; a directory stands for its parquet and CSV files in name order."""
    expanded: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if _format_of(f) is not None)
            if not found:
                raise DataError(f"{p}: directory holds no parquet or CSV files")
            expanded += found
        else:
            expanded.append(p)
    if not expanded:
        raise DataError("no input files given")
    return expanded


def _format_of(path: Path) -> str | None:
    name = path.name.lower()
    if name.endswith((".parquet", ".pq")):
        return "parquet"
    if name.endswith((".csv", ".csv.gz", ".csv.bz2", ".csv.zst", ".csv.lz4")):
        return "csv"
    return None


def _open_source(path: Path) -> _Source:
    fmt = _format_of(path)
    if fmt is None:
        raise DataError(f"{path}: unsupported file type (expected .parquet or .csv[.gz|.bz2])")
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    rows = None
    schema = None
    try:
        if fmt == "parquet":
            metadata = pq.read_metadata(path)
            schema = metadata.schema.to_arrow_schema()
            names, rows = list(schema.names), metadata.num_rows
        else:
            names = _csv_header(path)
    except (OSError, pa.ArrowException) as exc:
        raise DataError(f"{path}: cannot read {fmt} file: {exc}") from exc
    mapping: dict[str, str] = {}
    unknown: list[str] = []
    for name in names:
        canonical = _BY_NORMAL_NAME.get(_normalise(name))
        if canonical is None:
            unknown.append(name)
        elif canonical in mapping:
            raise DataError(
                f"{path}: columns {mapping[canonical]!r} and {name!r} both mean {canonical}"
            )
        else:
            mapping[canonical] = name
    if schema is not None:
        for canonical, name in mapping.items():
            problem = _type_problem(schema.field(name).type, canonical)
            if problem:
                raise DataError(f"{path}: column {name!r}: {problem}")
    missing = [c for c in REQUIRED if c not in mapping]
    has_zones = all(c in mapping for c in ZONE_ID_COLUMNS)
    has_coordinates = all(c in mapping for c in COORDINATE_COLUMNS)
    if not (has_zones or has_coordinates):
        missing.append(f"{' and '.join(ZONE_ID_COLUMNS)} (or {', '.join(COORDINATE_COLUMNS)})")
    if missing:
        raise DataError(
            f"{path}: not a TLC yellow-taxi file: missing required columns: "
            f"{', '.join(missing)}; unrecognised columns: {', '.join(unknown) or 'none'}"
        )
    return _Source(path, fmt, names, mapping, unknown, rows)


def _type_problem(type_: pa.DataType, canonical: str) -> str | None:
    """Why a column of this Arrow type cannot feed ``canonical``, or None if it can."""
    if pa.types.is_dictionary(type_):
        type_ = type_.value_type
    t = pa.types
    if t.is_null(type_) or t.is_string(type_) or t.is_large_string(type_):
        return None
    if canonical in _TIMESTAMP_COLUMNS:
        ok = t.is_timestamp(type_) or t.is_date(type_)
        return None if ok else f"type {type_} cannot hold timestamps"
    numeric = t.is_integer(type_) or t.is_floating(type_) or t.is_decimal(type_)
    if canonical == "store_and_fwd_flag":
        return None if numeric or t.is_boolean(type_) else f"type {type_} cannot hold Y/N flags"
    return None if numeric else f"type {type_} cannot hold numbers"


def _csv_header(path: Path) -> list[str]:
    with pa.input_stream(str(path), compression="detect") as stream:
        head = stream.read(1 << 16).decode("utf-8", errors="replace").lstrip("\ufeff")
    if not head.strip():
        raise DataError(f"{path}: empty file")
    return next(csv.reader(io.StringIO(head.splitlines()[0])))


@dataclass
class _Malformed:
    """CSV lines with the wrong number of fields, skipped by the parser and counted here."""

    count: int = 0
    examples: list[dict[str, Any]] = field(default_factory=list)

    def __call__(self, row: pacsv.InvalidRow) -> str:
        self.count += 1
        if len(self.examples) < _EXAMPLES_PER_REASON:
            self.examples.append({"line": row.number, "value": row.text[:200]})
        return "skip"


def _batches(source: _Source, malformed: _Malformed) -> Iterator[pa.RecordBatch]:
    wanted = list(source.mapping.values())
    if source.format == "parquet":
        with pq.ParquetFile(source.path) as parquet_file:
            yield from parquet_file.iter_batches(batch_size=_BATCH_ROWS, columns=wanted)
        return
    yield from pacsv.open_csv(
        source.path,
        read_options=pacsv.ReadOptions(block_size=_CSV_BLOCK_BYTES),
        parse_options=pacsv.ParseOptions(invalid_row_handler=malformed),
        convert_options=pacsv.ConvertOptions(
            column_types=dict.fromkeys(source.names, pa.string()),
            include_columns=wanted,
            null_values=[""],
            strings_can_be_null=True,
            quoted_strings_can_be_null=True,
        ),
    )


def _import_one(
    source: _Source, report: FileReport, writers: _MonthWriters, next_trip_id: int, bar: Any
) -> int:
    malformed = _Malformed()
    reasons: Counter = Counter()
    try:
        for batch in _batches(source, malformed):
            n = batch.num_rows
            table, bad, batch_reasons, examples = _convert(batch, source.mapping, next_trip_id)
            for reason, found in examples.items():
                kept = report.examples.setdefault(reason, [])
                for example in found[: _EXAMPLES_PER_REASON - len(kept)]:
                    kept.append({**example, "row": example["row"] + report.rows_in})
            reasons.update(batch_reasons)
            report.rows_in += n
            report.rows_rejected += int(bad.sum())
            good = table.filter(pa.array(~bad)) if bad.any() else table
            for month, rows in writers.write(good).items():
                report.months[month] = report.months.get(month, 0) + rows
            report.rows_written += good.num_rows
            next_trip_id += n
            bar.update(n)
    except pa.ArrowException as exc:
        raise DataError(f"{source.path}: cannot read {source.format} file: {exc}") from exc
    except DataError as exc:
        raise DataError(f"{source.path}: {exc}") from None
    if malformed.count:
        reasons[MALFORMED_LINE] += malformed.count
        report.rows_in += malformed.count
        report.rows_rejected += malformed.count
        report.examples[MALFORMED_LINE] = malformed.examples
    report.reasons = dict(sorted(reasons.items()))
    report.months = dict(sorted(report.months.items()))
    return next_trip_id


def _convert(
    batch: pa.RecordBatch, mapping: dict[str, str], first_trip_id: int
) -> tuple[pa.Table, np.ndarray, Counter, dict[str, list[dict[str, Any]]]]:
    """One batch in ``TRIPS_SCHEMA``, with the rejected-row mask, reasons and examples."""
    n = batch.num_rows
    columns: list[pa.Array] = []
    bad = np.zeros(n, dtype=bool)
    reasons: Counter = Counter()
    examples: dict[str, list[dict[str, Any]]] = {}

    def reject(mask: np.ndarray, reason: str, raw: pa.Array, column: str) -> None:
        nonlocal bad
        bad = bad | mask
        reasons[reason] += int(mask.sum())
        examples[reason] = [
            {"row": int(i) + 1, "column": column, "value": raw[int(i)].as_py()}
            for i in np.flatnonzero(mask)[:_EXAMPLES_PER_REASON]
        ]

    for field_ in TRIPS_SCHEMA:
        name = field_.name
        source_name = mapping.get(name)
        if name == "trip_id":
            columns.append(pa.array(np.arange(first_trip_id, first_trip_id + n, dtype=np.int64)))
            continue
        if source_name is None:
            columns.append(pa.nulls(n, field_.type))
            continue
        raw = batch.column(source_name)
        try:
            values, invalid, why = _parse(raw, name)
        except DataError as exc:
            raise DataError(f"column {source_name!r}: {exc}") from None
        label = name if source_name == name else f"{name} (from {source_name!r})"
        if invalid.any():
            reject(invalid, f"{label}: {why}", raw, source_name)
        if name == "tpep_pickup_datetime":
            missing = ~invalid & _is_null(values)
            if missing.any():
                reject(missing, f"{label}: missing", raw, source_name)
        columns.append(values)
    return pa.Table.from_arrays(columns, schema=TRIPS_SCHEMA), bad, reasons, examples


def _is_null(array: pa.Array) -> np.ndarray:
    return pc.is_null(array).to_numpy(zero_copy_only=False)


def _mask(array: pa.Array) -> np.ndarray:
    return pc.fill_null(array, False).to_numpy(zero_copy_only=False)


def _parse(raw: pa.Array, name: str) -> tuple[pa.Array, np.ndarray, str]:
    """(values of the canonical type, invalid-value mask, reason) for one source column."""
    if pa.types.is_dictionary(raw.type):
        raw = raw.dictionary_decode()
    if pa.types.is_null(raw.type):
        return pa.nulls(len(raw), TRIPS_SCHEMA.field(name).type), np.zeros(len(raw), bool), ""
    if name in _TIMESTAMP_COLUMNS:
        return (*_parse_timestamp(raw), "not a timestamp")
    if name == "store_and_fwd_flag":
        return (*_parse_codes(raw, FLAG_CODES, pa.string()), "not Y or N")
    if name in _INT_COLUMNS:
        labels = {"VendorID": VENDOR_CODES, "payment_type": PAYMENT_CODES}.get(name)
        return (*_parse_int(raw, labels), "not an integer code")
    if name in MONEY_COLUMNS or name in COORDINATE_COLUMNS or name == "trip_distance":
        return (*_parse_float(raw), "not a number")
    raise AssertionError(name)  # pragma: no cover


def _text(raw: pa.Array) -> pa.Array:
    """Trimmed text with empty strings as null."""
    text = pc.utf8_trim_whitespace(raw)
    return pc.if_else(pc.equal(text, ""), pa.scalar(None, text.type), text)


def _parse_float(raw: pa.Array) -> tuple[pa.Array, np.ndarray]:
    t = raw.type
    n = len(raw)
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t):
        values = pc.cast(raw, pa.float64())
        invalid = np.zeros(n, dtype=bool)
    elif pa.types.is_string(t) or pa.types.is_large_string(t):
        text = _text(raw)
        try:
            values = pc.cast(text, pa.float64())
            invalid = np.zeros(n, dtype=bool)
        except pa.ArrowInvalid:
            ok = pc.match_substring_regex(text, _NUMBER)
            values = pc.cast(pc.if_else(ok, text, pa.scalar(None, text.type)), pa.float64())
            invalid = _mask(pc.and_(pc.is_valid(text), pc.invert(pc.fill_null(ok, False))))
    else:
        raise DataError(f"type {t} cannot hold numbers")
    nan = pc.is_nan(values)
    infinite = _mask(pc.is_inf(values))
    values = pc.if_else(pc.or_(nan, pc.is_inf(values)), pa.scalar(None, pa.float64()), values)
    return values, invalid | infinite


def _parse_int(raw: pa.Array, labels: dict[str, int] | None) -> tuple[pa.Array, np.ndarray]:
    n = len(raw)
    if pa.types.is_integer(raw.type):
        values = pc.cast(raw, pa.int64())
        invalid = np.zeros(n, dtype=bool)
    else:
        from_label = None
        if labels and (pa.types.is_string(raw.type) or pa.types.is_large_string(raw.type)):
            text = _text(raw)
            index = pc.index_in(pc.utf8_upper(text), value_set=pa.array(list(labels)))
            from_label = pc.take(pa.array(list(labels.values()), pa.int64()), index)
            raw = pc.if_else(pc.is_valid(index), pa.scalar(None, text.type), text)
        numbers, invalid = _parse_float(raw)
        whole = pc.equal(pc.floor(numbers), numbers)
        fractional = _mask(pc.invert(whole))
        in_range = pc.and_(
            pc.greater_equal(numbers, float(_INT32[0])), pc.less_equal(numbers, float(_INT32[1]))
        )
        usable = pc.and_(whole, in_range)
        values = pc.cast(pc.if_else(usable, numbers, pa.scalar(None, pa.float64())), pa.int64())
        invalid = invalid | fractional | _mask(pc.invert(in_range))
        if from_label is not None:
            values = pc.coalesce(from_label, values)
    out_of_range = pc.or_(pc.less(values, _INT32[0]), pc.greater(values, _INT32[1]))
    invalid = invalid | _mask(out_of_range)
    values = pc.if_else(out_of_range, pa.scalar(None, pa.int64()), values)
    return pc.cast(values, pa.int32()), invalid


def _parse_codes(
    raw: pa.Array, codes: dict[str, str], type_: pa.DataType
) -> tuple[pa.Array, np.ndarray]:
    if pa.types.is_boolean(raw.type):
        raw = pc.if_else(raw, "Y", "N")
    text = pc.utf8_upper(_text(pc.cast(raw, pa.string())))
    index = pc.index_in(text, value_set=pa.array(list(codes)))
    values = pc.take(pa.array(list(codes.values()), type_), index)
    invalid = _mask(pc.and_(pc.is_valid(text), pc.is_null(index)))
    return values, invalid


def _parse_timestamp(raw: pa.Array) -> tuple[pa.Array, np.ndarray]:
    t = raw.type
    n = len(raw)
    target = pa.timestamp("us")
    if pa.types.is_timestamp(t):
        if t.tz is not None:
            raw = pc.local_timestamp(raw)
        return pc.cast(raw, target, safe=False), np.zeros(n, dtype=bool)
    if pa.types.is_date(t):
        return pc.cast(raw, target), np.zeros(n, dtype=bool)
    if not (pa.types.is_string(t) or pa.types.is_large_string(t)):
        raise DataError(f"type {t} cannot hold timestamps")
    text = _text(raw)
    try:
        return pc.cast(text, target), np.zeros(n, dtype=bool)
    except pa.ArrowInvalid:
        pass
    whole_seconds = pc.replace_substring_regex(text, r"\.\d+$", "")
    values = pa.nulls(n, target)
    for fmt in TIMESTAMP_FORMATS:
        parsed = pc.strptime(whole_seconds, format=fmt, unit="us", error_is_null=True)
        values = pc.coalesce(values, parsed)
    invalid = _mask(pc.and_(pc.is_valid(text), pc.is_null(values)))
    return values, invalid


class _MonthWriters:
    """One open parquet writer per pickup month, fed in row groups of about ROW_GROUP_ROWS."""

    def __init__(self, out: Path):
        self.out = out
        self.writers: dict[tuple[int, int], pq.ParquetWriter] = {}
        self.buffers: dict[tuple[int, int], list[pa.Table]] = {}
        self.rows: dict[tuple[int, int], int] = {}

    def write(self, table: pa.Table) -> dict[str, int]:
        """Append rows to their months' files; return rows per month ("YYYY-MM")."""
        if table.num_rows == 0:
            return {}
        pickup = table["tpep_pickup_datetime"].to_numpy().astype("datetime64[us]")
        months = pickup.astype("datetime64[M]").astype(np.int64)  # months since 1970-01
        order = np.argsort(months, kind="stable")
        keys, starts = np.unique(months[order], return_index=True)
        if len(keys) > 1:
            table = table.take(pa.array(order))
        stops = [*starts[1:], len(order)]
        written: dict[str, int] = {}
        for key, start, stop in zip(keys, starts, stops, strict=True):
            year, month0 = divmod(int(key) + 1970 * 12, 12)
            piece = table.slice(int(start), int(stop - start))
            self._append((year, month0 + 1), piece)
            written[f"{year:04d}-{month0 + 1:02d}"] = piece.num_rows
        return written

    def _append(self, month: tuple[int, int], piece: pa.Table) -> None:
        buffer = self.buffers.setdefault(month, [])
        buffer.append(piece)
        self.rows[month] = self.rows.get(month, 0) + piece.num_rows
        if sum(t.num_rows for t in buffer) >= ROW_GROUP_ROWS:
            self._flush(month)

    def _flush(self, month: tuple[int, int]) -> None:
        buffer = self.buffers.pop(month, [])
        if month not in self.writers:
            self.writers[month] = parquet_writer(self.out / trip_file_name(*month))
        if buffer:
            table = pa.concat_tables(buffer).combine_chunks()
            self.writers[month].write_table(table, row_group_size=ROW_GROUP_ROWS)

    def close(self) -> dict[str, int]:
        """Flush and close every month; return {file name: rows}."""
        for month in list(self.buffers):
            self._flush(month)
        for writer in self.writers.values():
            writer.close()
        return {trip_file_name(*month): rows for month, rows in sorted(self.rows.items())}

    def abort(self) -> None:
        """Close every file (the unfinished dataset's folder is removed as a whole)."""
        for writer in self.writers.values():
            with contextlib.suppress(Exception):  # best effort: another error is propagating
                writer.close()
