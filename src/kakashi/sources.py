"""The sources sheet: loading, validation and stable splits.

The sheet is a TSV with one row per source. Each row is validated against
``schemas/sources.schema.yaml`` through ``snakemake.utils.validate`` (which also fills
in defaults), then checked across rows. Every error names the sheet, the line and the
id, so a user can fix it at once.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import re
import warnings
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pandas as pd

from kakashi.errors import SheetError

SCHEMA_DIR = Path(__file__).parent / "schemas"
SHEET_SCHEMA = SCHEMA_DIR / "sources.schema.yaml"
CONFIG_SCHEMA = SCHEMA_DIR / "config.schema.yaml"
SPLITS = ("train", "val", "test")
NUMERIC_COLUMNS = ("start", "end", "audio_offset_s", "fps")
MOTION_EXTENSIONS = (".bvh", ".pkl", ".npy", ".npz", ".json")
MOTION_ONLY_COLUMNS = ("audio", "audio_offset_s", "fps", "skeleton")
# Kept in step with the id pattern of the schema; also the Snakemake wildcard constraint.
MAX_ID_LENGTH = 100
SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")


def is_url(source: str) -> bool:
    """True for sources yt-dlp should download (anything with a URL scheme)."""
    return urlparse(source).scheme in ("http", "https", "ftp")


def looks_like_playlist(url: str) -> bool:
    """Guess whether a URL names a playlist (YouTube-style ``list=`` or ``/playlist``)."""
    parsed = urlparse(url)
    query = parse_qs(parsed.query)
    return ("list" in query and "v" not in query) or "/playlist" in parsed.path


def stable_split(seq: str, val: float = 0.1, test: float = 0.1) -> str:
    """The split of a sequence from a hash of its id: the same on every machine and run."""
    if val + test > 1:
        raise SheetError(
            f"split fractions val={val} + test={test} exceed 1; lower them in config.yaml"
        )
    digest = hashlib.sha256(seq.encode("utf-8")).digest()
    position = int.from_bytes(digest[:8], "big") / 2**64
    if position < test:
        return "test"
    if position < test + val:
        return "val"
    return "train"


def _schema_columns() -> set[str]:
    from kakashi.settings import load_schema

    return set(load_schema(SHEET_SCHEMA)["properties"])


@functools.cache
def _row_validator() -> Any:
    """The sheet row schema as a validator that also fills in defaults, built once.

    snakemake.utils.validate re-reads and re-parses the schema file on every call, about
    4 ms a row: 40 s for a 10,000-row sheet, in every Slurm job that parses the Snakefile.
    """
    from kakashi.settings import load_schema, validator_with_defaults

    return validator_with_defaults(load_schema(SHEET_SCHEMA))


def _row_label(sheet: Path, line: int, row: dict) -> str:
    ident = row.get("id")
    return f"{sheet}, line {line}" + (f" (id {ident!r})" if ident else "")


def read_sheet(path: str | Path, val: float = 0.1, test: float = 0.1) -> pd.DataFrame:
    """Read and validate a sources sheet; return one row per source, indexed by id.

    Columns of the result: ``source`` (absolute path or URL), ``kind`` (video, playlist or
    motion), ``start``, ``end`` (NaN for the end of the video), ``split`` (the given one,
    or a stable hash of the id; playlist rows keep theirs empty so each entry gets its
    own), ``style`` (lower case, None where not given), and for motion rows ``audio``
    (absolute path), ``audio_offset_s``, ``fps`` and ``skeleton`` (NaN or None where not
    given).
    """
    import jsonschema

    validator = _row_validator()
    sheet = Path(path)
    if not sheet.is_file():
        raise SheetError(
            f"sources sheet {sheet} does not exist; create it or point config 'sources' at one"
        )
    _check_layout(sheet)
    try:
        # index_col=False: trailing tabs must not turn the first column into an index. The
        # fields it drops are empty (_check_layout refused any other), so its warning is not
        # the user's business.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", pd.errors.ParserWarning)
            frame = pd.read_csv(sheet, sep="\t", dtype=str, keep_default_na=False, index_col=False)
    except Exception as exc:  # pandas raises several kinds for malformed TSV
        raise SheetError(f"sources sheet {sheet} cannot be read as TSV: {exc}") from exc
    frame.columns = [column.strip() for column in frame.columns]
    unknown = [column for column in frame.columns if column not in _schema_columns()]
    if unknown:
        raise SheetError(
            f"sources sheet {sheet}: unknown column(s) {', '.join(map(repr, unknown))}; "
            f"allowed: {', '.join(sorted(_schema_columns()))}"
        )

    rows: list[dict] = []
    seen: dict[str, int] = {}
    seen_folded: dict[str, tuple[str, int]] = {}
    for offset, record in enumerate(frame.to_dict(orient="records")):
        line = offset + 2  # the header is line 1
        row = {key: value.strip() for key, value in record.items() if value.strip() != ""}
        label = _row_label(sheet, line, row)
        for column in NUMERIC_COLUMNS:
            if column in row:
                try:
                    row[column] = float(row[column])
                except ValueError:
                    raise SheetError(
                        f"{label}: {column} must be a number of seconds, got {row[column]!r}"
                    ) from None
                if not math.isfinite(row[column]):
                    raise SheetError(f"{label}: {column} must be finite, got {row[column]!r}")
        if "id" in row and not SAFE_ID.fullmatch(row["id"]):
            raise SheetError(
                f"{label}: id {row['id']!r} is not a safe file name; use only letters, digits, "
                "'_', '.' and '-' (not first), at most 100 characters"
            )
        error = jsonschema.exceptions.best_match(validator.iter_errors(row))
        if error is not None:
            raise SheetError(f"{label}: {error.message}")
        ident = row["id"]
        if ident in seen:
            raise SheetError(f"{label}: duplicate id {ident!r}, first used on line {seen[ident]}")
        if ident.lower() in seen_folded:
            first, first_line = seen_folded[ident.lower()]
            raise SheetError(
                f"{label}: id {ident!r} differs from {first!r} (line {first_line}) only in "
                "case; their files would be one on case-insensitive file systems (macOS, "
                "Windows): rename one"
            )
        seen[ident] = line
        seen_folded[ident.lower()] = (ident, line)
        if "end" in row and row["end"] <= row["start"]:
            raise SheetError(
                f"{label}: end ({row['end']} s) must be after start ({row['start']} s)"
            )
        source = row["source"]
        if is_url(source):
            row.setdefault("kind", "playlist" if looks_like_playlist(source) else "video")
            if row["kind"] == "motion":
                raise SheetError(f"{label}: motion files must be local, got the URL {source!r}")
        else:
            if row.get("kind") == "playlist":
                raise SheetError(f"{label}: kind 'playlist' needs a URL, got {source!r}")
            local = _local_path(sheet, source)
            if not local.exists():
                raise SheetError(
                    f"{label}: source file {str(local)!r} does not exist; fix the path "
                    "(relative paths are relative to the sheet's folder)"
                )
            is_motion = local.is_dir() or local.suffix.lower() in MOTION_EXTENSIONS
            row.setdefault("kind", "motion" if is_motion else "video")
            if row["kind"] == "video" and not local.is_file():
                raise SheetError(f"{label}: source {str(local)!r} is a folder, not a video file")
            row["source"] = str(local.resolve())
        if row["kind"] == "motion":
            if "audio" not in row:
                raise SheetError(
                    f"{label}: a motion row needs its music in the audio column; Kakashi "
                    "learns dance from music"
                )
            audio = _local_path(sheet, row["audio"])
            if not audio.is_file():
                raise SheetError(f"{label}: audio file {str(audio)!r} does not exist")
            row["audio"] = str(audio.resolve())
        else:
            given = [column for column in MOTION_ONLY_COLUMNS if column in row]
            if given:
                raise SheetError(
                    f"{label}: column(s) {', '.join(given)} apply to motion rows only, and "
                    f"this row is a {row['kind']}"
                )
        if row["kind"] == "playlist" and len(ident) > MAX_ID_LENGTH - 4:
            raise SheetError(
                f"{label}: a playlist id may have at most {MAX_ID_LENGTH - 4} characters, "
                "so that its entries' ids (ID-001, ...) stay within the limit"
            )
        if row["kind"] != "playlist" and "split" not in row:
            row["split"] = stable_split(ident, val, test)
        rows.append(row)
    if not rows:
        raise SheetError(f"sources sheet {sheet} has no rows; add at least one source")
    result = pd.DataFrame(rows).set_index("id", drop=False)
    for column in ("end", "split", "style", *MOTION_ONLY_COLUMNS):
        if column not in result:
            result[column] = None
    # One label per style whatever its case: "Waltz" and "waltz" are one class.
    result["style"] = result["style"].map(lambda v: v.lower() if isinstance(v, str) else None)
    for column in ("end", "audio_offset_s", "fps"):
        result[column] = result[column].astype(float)
    result["split"] = result["split"].astype(object).where(result["split"].notna(), None)
    return result


def _check_layout(sheet: Path) -> None:
    """Say what is wrong with a sheet's layout before pandas guesses around it: a sheet
    without a header line, separated by commas or semicolons, or with a row of more fields
    than the header names (pandas would silently take the first field as an index)."""
    import csv

    try:
        text = sheet.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SheetError(f"sources sheet {sheet} cannot be read as UTF-8 text: {exc}") from exc
    rows = [
        (number, fields)
        for number, fields in enumerate(csv.reader(text.splitlines(), delimiter="\t"), start=1)
        if any(field.strip() for field in fields)
    ]
    if not rows:
        raise SheetError(
            f"sources sheet {sheet} is empty; write a header line and a row per source"
        )
    header_line, header = rows[0]
    names = [name.strip() for name in header]
    known = _schema_columns()
    if len(header) == 1:
        for separator, label in ((",", "commas"), (";", "semicolons")):
            if set(names[0].split(separator)) & {"id", "source"}:
                raise SheetError(
                    f"sources sheet {sheet} is separated by {label}; Kakashi reads tab-separated "
                    "values (TSV): save it with tabs between the columns"
                )
    if not set(names) & known:
        raise SheetError(
            f"sources sheet {sheet}: line {header_line} is not a header (it names none of the "
            f"columns {', '.join(sorted(known))}); make the first line name the columns, e.g. "
            "'id<TAB>source'"
        )
    for number, fields in rows[1:]:
        while fields and not fields[-1].strip():  # trailing tabs of a spreadsheet export
            fields = fields[:-1]
        if len(fields) > len(header):
            raise SheetError(
                f"sources sheet {sheet}, line {number}: {len(fields)} fields but the header "
                f"names {len(header)} columns; remove the extra tabs or name the column"
            )


def _local_path(sheet: Path, value: str) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else sheet.parent / path


def config_hash(config: dict) -> str:
    """A short hash of the config sections that change what a shard contains."""
    relevant = {key: config.get(key) for key in ("fps", "features", "pose", "cut", "align")}
    text = json.dumps(relevant, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def sequence_split(seq: str, row_split: str | None, val: float, test: float) -> str:
    """A sequence's split: its sheet row's, else the stable hash of its id."""
    return row_split if isinstance(row_split, str) and row_split else stable_split(seq, val, test)


def sheet_sequences(
    sheet: str | Path, val: float, test: float, playlists: str | Path
) -> list[tuple[str, str]]:
    """Every sequence of a sheet with its split: ``(id, split)`` per video or motion row and
    per entry of a playlist row (from ``PLAYLISTS/ID.tsv``, written by ``kakashi playlist``)."""
    from kakashi.fetch import read_playlist_tsv

    frame = read_sheet(sheet, val, test)
    out = []
    for seq, row in frame.to_dict(orient="index").items():
        if row["kind"] != "playlist":
            out.append((seq, sequence_split(seq, row["split"], val, test)))
            continue
        listing = Path(playlists) / f"{seq}.tsv"
        for entry in read_playlist_tsv(listing):
            out.append((entry["seq"], sequence_split(entry["seq"], row["split"], val, test)))
    return out
