"""``guess``: the ``in.parser`` mapping for a CSV sample, as ``embulk guess`` writes it.

Embulk's heuristics for the dialect, the header and the column types, with one deliberate change:
types are lossless. A column becomes long, double, boolean, timestamp or json only when every
sampled value survives being loaded as that type; anything else stays string.
"""

from __future__ import annotations

import codecs
import math
import re
import statistics
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

from pipeline.formats.csv import UNCLOSED_QUOTE, CsvOptions, Row, rows_from_lines
from pipeline.formats.decode import ASCII_COMPATIBLE_CODECS, UTF8_BOM, decompress, python_codec
from pipeline.formats.types import INT64_MAX, INT64_MIN, normalize
from pipeline.schema import Column

# How much of an object the caller should read for a guess (a ranged GET of its first bytes).
SAMPLE_BYTES = 32 * 1024

DELIMITER_CANDIDATES = (",", "\t", "|", ";")
QUOTE_CANDIDATES = ('"', "'")
ESCAPE_CANDIDATES = ("\\", '"')
NULL_STRING_CANDIDATES = ("null", "NULL", "#N/A", "\\N")
COMMENT_LINE_MARKER_CANDIDATES = ("#", "//")
# Embulk looks for the start of the table among the first lines only.
MAX_SKIP_LINES = 10

BOOLEAN_WORDS = frozenset(
    variant for word in ("true", "false", "yes", "no") for variant in (word, word.title(), word.upper())
)
_LONG = re.compile(r"-?(?:0|[1-9][0-9]*)")
_DOUBLE = re.compile(r"[+-]?(?:NaN|Infinity|(?:[1-9][0-9]*|0)\.[0-9]+(?:[eE][+-]?[0-9]+)?)")


def guess_csv(sample: bytes, *, complete: bool, fixed: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The ``in.parser`` mapping for a sample of a CSV object, in ``embulk guess``'s key order.

    ``complete=False`` means the sample was cut from a larger object, so its last line is dropped.
    Compressed samples (gzip, bzip2) are decompressed first. ``fixed`` is the seed's own ``in.parser``:
    as in Embulk, what it says stays as written, and the rest is guessed with it (a seed's
    ``quote: "'"`` is the quote the columns are then read with).
    """
    fixed = dict(fixed or {})
    data, complete = _decompressed(sample, complete)
    charset = fixed["charset"] if "charset" in fixed else guess_charset(data, complete=complete)
    text = _sample_text(data, charset, complete)
    lines = _split_lines(text)
    parser: dict[str, Any] = {"charset": charset, "newline": fixed.get("newline") or guess_newline(text),
                              "type": "csv"}
    delimiter = fixed.get("delimiter") or _guess_delimiter(lines)
    parser["delimiter"] = delimiter
    quote = fixed["quote"] if "quote" in fixed else _guess_quote(lines, delimiter, complete)
    parser["quote"] = quote
    if "escape" in fixed:
        parser["escape"] = fixed["escape"]
    elif quote is not None:
        parser["escape"] = _guess_escape(lines, delimiter, quote)
    null_string = fixed["null_string"] if "null_string" in fixed else _guess_null_string(lines, delimiter)
    if null_string is not None:
        parser["null_string"] = null_string

    escape = parser.get("escape")
    newline = parser["newline"]
    options = CsvOptions(delimiter=delimiter, quote=quote, escape=escape, null_string=null_string, newline=newline)
    if not complete:
        lines = _without_cut_record(lines, options)
    seed_skips = "skip_header_lines" in fixed
    if seed_skips:
        skip_lines = int(fixed["skip_header_lines"] or 0)
    else:
        rows = _good_rows(lines, options)
        table_start = _guess_table_start(rows)
        skip_lines = rows[table_start][0] - 1 if rows else 0
    body = lines[skip_lines:]
    marker = (fixed["comment_line_marker"] if "comment_line_marker" in fixed
              else _guess_comment_line_marker(body, delimiter, quote, null_string))
    if marker is not None:
        parser["comment_line_marker"] = marker
    options = CsvOptions(delimiter=delimiter, quote=quote, escape=escape, null_string=null_string,
                         comment_line_marker=marker, newline=newline)
    body_rows = _good_rows(body, options)
    records = [row[1] for row in body_rows]
    trimmed = [row[1] for row in _good_rows(body, _with_trim(options))]

    header = False
    types: list[tuple[str, str | None]] = []
    trim = False
    # Embulk's trim test: trim when trimming unquoted spaces changes what the values look like.
    if len(records) == 1 or (seed_skips and records):  # the seed says where the data starts: no header row
        types = column_types(records)
        trimmed_types = column_types(trimmed)
        trim = len(trimmed) == 1 and trimmed_types != types
        types = trimmed_types if trim else types
    elif records:
        first = column_types(records[:1])
        types = column_types(records[1:])
        trimmed_types = column_types(trimmed[1:])
        trim = len(trimmed) == len(records) and trimmed_types != types
        if trim:
            records, types = trimmed, trimmed_types
            first = column_types(records[:1])
        names_only = all(kind in ("string", "boolean") for kind, _ in first)
        header = (first != types and names_only) or _lengths_say_header(records)
    if "trim_if_not_quoted" in fixed:
        trim = bool(fixed["trim_if_not_quoted"])
    parser["trim_if_not_quoted"] = trim
    if header:
        # Through the header row's last line: a quoted line break makes it longer than one line.
        line, _, raw, _ = body_rows[0]
        skip_lines += line + len(_LINE_BREAK.findall(raw))
    parser["skip_header_lines"] = skip_lines
    parser["allow_extra_columns"] = False
    parser["allow_optional_columns"] = False
    if header:
        names = _column_names(records[0], max(len(types), len(records[0])))
        types = types + [("string", None)] * (len(names) - len(types))
    else:
        names = [f"c{index}" for index in range(len(types))]
        if seed_skips and skip_lines:
            # The last skipped line names the columns when it has as many fields as the data.
            named = _good_rows(lines[skip_lines - 1:skip_lines], options)
            if named and len(named[0][1]) == len(types) and all(named[0][1]):
                names = _column_names(named[0][1], len(types))
    parser["columns"] = [_column(name, kind, fmt) for name, (kind, fmt) in zip(names, types, strict=True)]
    # Everything the seed wrote wins, in the seed's place among the guessed keys.
    return {**parser, **fixed}


# embulk guess reads 32 KiB; a sample holding fewer whole records than this grows (4x each time) up to the cap.
MIN_SAMPLE_RECORDS = 16
MAX_SAMPLE_BYTES = 16 << 20


def guess_growing(read: Callable[[int], tuple[bytes, bool]], *, fixed: Mapping[str, Any] | None = None,
                  all_strings: bool = False) -> dict[str, Any]:
    """``guess_csv`` on a sample that grows until it holds MIN_SAMPLE_RECORDS whole records (or the object).

    ``read(n)`` returns the object's first ``n`` bytes and whether that is all of it. A first row with
    a 1 MB field would leave a 32 KiB sample with no whole record: no header, no types.
    ``all_strings`` is Embulk's csv_all_strings guess: every column a string.
    """
    size = SAMPLE_BYTES
    while True:
        sample, complete = read(size)
        parser = guess_csv(sample, complete=complete, fixed=fixed)
        if complete or size >= MAX_SAMPLE_BYTES or whole_records(sample, parser) >= MIN_SAMPLE_RECORDS:
            break
        size = min(size * 4, MAX_SAMPLE_BYTES)
    if all_strings and not (fixed or {}).get("columns"):
        parser["columns"] = [{"name": column["name"], "type": "string"} for column in parser["columns"]]
    return parser


def whole_records(sample: bytes, parser: Mapping[str, Any]) -> int:
    """How many whole records ``sample`` holds when read with ``parser`` (a cut last one does not count)."""
    data, _ = _decompressed(sample, False)
    lines = _split_lines(_sample_text(data, parser["charset"], False))
    options = CsvOptions(delimiter=parser["delimiter"], quote=parser.get("quote"), escape=parser.get("escape"),
                         null_string=parser.get("null_string"), newline=parser["newline"])
    return len(_good_rows(_without_cut_record(lines, options), options))


def _column(name: str, kind: str, fmt: str | None) -> dict[str, str]:
    return Column(name, kind, fmt).to_config()


def _decompressed(sample: bytes, complete: bool) -> tuple[bytes, bool]:
    pieces: list[bytes] = []
    try:
        for piece in decompress([sample]):
            pieces.append(piece)
            if sum(map(len, pieces)) > 16 * SAMPLE_BYTES:
                return b"".join(pieces), False
    except ValueError:
        # A sample cut from a compressed object ends mid-stream; what came out before is still good.
        return b"".join(pieces), False
    return b"".join(pieces), complete


def guess_charset(data: bytes, *, complete: bool = True) -> str:
    """Embulk's charset name for ``data``: UTF-8, MS932, EUC-JP, UTF-16LE/BE or windows-1252."""
    if data.startswith(UTF8_BOM):
        return "UTF-8"
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "UTF-16"
    wide = _utf16_without_bom(data)
    if wide is not None:
        return wide
    if _decode(data, "utf-8", complete) is not None:
        return "UTF-8"
    scores = {}
    for name, codec in (("MS932", "cp932"), ("EUC-JP", "euc_jp")):
        text = _decode(data, codec, complete)
        if text is not None:
            scores[name] = _japanese_score(text)
    if scores and max(scores.values()) > 0:
        return max(scores, key=lambda name: scores[name])
    if _decode(data, "cp1252", complete) is not None:
        return "windows-1252"
    return "ISO-8859-1"


def _utf16_without_bom(data: bytes) -> str | None:
    pairs = len(data) // 2
    if pairs < 2:
        return None
    even_zeros = data[0:pairs * 2:2].count(0)
    odd_zeros = data[1:pairs * 2:2].count(0)
    if odd_zeros > 0.4 * pairs and even_zeros < 0.05 * pairs:
        return "UTF-16LE"
    if even_zeros > 0.4 * pairs and odd_zeros < 0.05 * pairs:
        return "UTF-16BE"
    return None


def _decode(data: bytes, codec: str, complete: bool) -> str | None:
    try:
        return codecs.getincrementaldecoder(codec)().decode(data, final=complete)
    except UnicodeDecodeError:
        return None


def _japanese_score(text: str) -> int:
    # Kana decide: EUC-JP read as MS932 turns into half-width katakana and private-use characters,
    # and MS932 read as EUC-JP rarely decodes at all.
    score = 0
    for char in text:
        code = ord(char)
        if code < 0x80:
            continue
        if 0x3041 <= code <= 0x30FF:
            score += 2
        elif 0x4E00 <= code <= 0x9FFF or 0x3000 <= code <= 0x303F or 0xFF01 <= code <= 0xFF5E:
            score += 1
        elif 0xFF61 <= code <= 0xFF9F:
            score -= 1
        elif 0xE000 <= code <= 0xF8FF:
            score -= 5
        else:
            score -= 2
    return score


def _sample_text(data: bytes, charset: str, complete: bool) -> str:
    codec = python_codec(charset)
    if not complete and codec in ASCII_COMPATIBLE_CODECS:
        data = data[:max(data.rfind(b"\n"), data.rfind(b"\r")) + 1]
    text = codecs.getincrementaldecoder(codec)(errors="replace").decode(data, final=True)
    if text.startswith("\ufeff"):
        text = text[1:]
    if not complete and codec not in ASCII_COMPATIBLE_CODECS:
        text = text[:max(text.rfind("\n"), text.rfind("\r")) + 1]
    return text


def guess_newline(text: str) -> str:
    """CRLF, CR or LF, counted the way Embulk counts them."""
    crlf = text.count("\r\n")
    cr = text.count("\r")
    lf = text.count("\n")
    if crlf > cr / 2 and crlf > lf / 2:
        return "CRLF"
    if cr > lf / 2:
        return "CR"
    return "LF"


_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+\Z")
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_DOUBLE_QUOTED = re.compile(r'"[^"]*"')


def _split_lines(text: str) -> list[str]:
    return _LINE.findall(text)


def _guess_delimiter(lines: Sequence[str]) -> str:
    contents = [_DOUBLE_QUOTED.sub("", line.rstrip("\r\n")) for line in lines if line.strip("\r\n")]
    best, best_weight = DELIMITER_CANDIDATES[0], 0.0
    for candidate in DELIMITER_CANDIDATES:
        counts = [content.count(candidate) for content in contents]
        total = sum(counts)
        if total == 0:
            continue
        spread = max(statistics.pstdev(counts), 1e-9)
        # Many delimiters, the same number on every line: Embulk's weight.
        weight = total / spread
        if weight > best_weight:
            best, best_weight = candidate, weight
    return best if best_weight > 1.0 else DELIMITER_CANDIDATES[0]


def _guess_quote(lines: Sequence[str], delimiter: str, complete: bool) -> str | None:
    """Embulk's CsvGuessPlugin weights: per line holding the candidate, its count, +20 per whole quoted
    field, +40 per quote opening a field and +40 per quote closing one, averaged over those lines.

    The heaviest candidate wins from a weight of 10; below that the file does not quote (null). With no
    candidate in the sample at all the quote is '"', Embulk's default.
    """
    d = re.escape(delimiter)
    best, best_weight, seen = None, -1, False
    contents = [line.rstrip("\r\n") for line in lines]
    for candidate in QUOTE_CANDIDATES:
        q = re.escape(candidate)
        whole = re.compile(f"(?:^|{d})\\s*{q}(?:(?!{q}).)*\\s*{q}(?:$|{d})")
        opening = re.compile(f"(?:^|{d})\\s*{q}")
        closing = re.compile(f"{q}\\s*(?:{d}|$)")
        weights = [content.count(candidate) + 20 * len(whole.findall(content)) + 40 * len(opening.findall(content))
                   + 40 * len(closing.findall(content)) for content in contents if candidate in content]
        weight = sum(weights) // len(weights) if weights else 0
        seen = seen or bool(weights)
        if weight > best_weight:
            best, best_weight = candidate, weight
    if not seen:
        return '"'
    if best is None or best_weight < 10:
        return None
    # Ours beyond Embulk's weights: quotes that open fields and never close them are data, not quoting.
    return None if _parses_worse_with_quote(lines, delimiter, complete, best) else best


def _parses_worse_with_quote(lines: Sequence[str], delimiter: str, complete: bool, quote: str) -> bool:
    def problems(options: CsvOptions) -> int:
        # In a cut sample the last record may be cut inside its quotes: that is the cut, not the file.
        return sum(row[3] is not None and (complete or row[3][0] != UNCLOSED_QUOTE)
                   for row in rows_from_lines(lines, options))

    quoting = min(problems(CsvOptions(delimiter=delimiter, quote=quote, escape=escape))
                  for escape in ESCAPE_CANDIDATES)
    return quoting > problems(CsvOptions(delimiter=delimiter, quote=None, escape=None))


def _guess_escape(lines: Sequence[str], delimiter: str, quote: str) -> str | None:
    text = "".join(lines)
    q = re.escape(quote)
    evidence = {}
    for candidate in ESCAPE_CANDIDATES:
        if candidate == quote:
            values = re.findall(f"{q}((?:[^{q}]|{q}{q})*){q}", text)
            evidence[candidate] = sum(value.count(quote * 2) for value in values)
        else:
            e = re.escape(candidate)
            values = re.findall(f"{q}((?:[^{q}{e}]|{e}.)*){q}", text, re.DOTALL)
            evidence[candidate] = sum(value.count(candidate + quote) for value in values)
    # On a tie the quote escapes itself, as RFC 4180 has it.
    best = max(ESCAPE_CANDIDATES, key=lambda candidate: (evidence[candidate], candidate == quote))
    if evidence[best] > 0:
        return best
    return '"' if quote == '"' else None


def _guess_null_string(lines: Sequence[str], delimiter: str) -> str | None:
    counts = dict.fromkeys(NULL_STRING_CANDIDATES, 0)
    for line in lines:
        for field in line.rstrip("\r\n").split(delimiter):
            if field in counts:
                counts[field] += 1
    best = max(NULL_STRING_CANDIDATES, key=lambda candidate: counts[candidate])
    return best if counts[best] else None


def _without_cut_record(lines: list[str], options: CsvOptions) -> list[str]:
    # A sample cut inside a quoted field ends in an unclosed quote; the lines from there are not records.
    for line, _, _, problem in rows_from_lines(lines, options):
        if problem is not None and problem[0] == UNCLOSED_QUOTE:
            return lines[:line - 1]
    return lines


def _good_rows(lines: Sequence[str], options: CsvOptions) -> list[Row]:
    return [row for row in rows_from_lines(lines, options) if row[3] is None]


def _with_trim(options: CsvOptions) -> CsvOptions:
    return CsvOptions(delimiter=options.delimiter, quote=options.quote, escape=options.escape,
                      null_string=options.null_string, comment_line_marker=options.comment_line_marker,
                      trim_if_not_quoted=True)


def _guess_table_start(rows: Sequence[Row]) -> int:
    # Lines before the table (a title, notes) have fewer fields than the rows that follow them.
    counts = [len(row[1]) for row in rows]
    for index in range(min(MAX_SKIP_LINES, len(counts) - 1)):
        if all(count <= counts[index] for count in counts[index + 1:MAX_SKIP_LINES]):
            return index
    return 0


def _guess_comment_line_marker(
    lines: Sequence[str], delimiter: str, quote: str | None, null_string: str | None
) -> str | None:
    best, best_count = None, 0
    for marker in COMMENT_LINE_MARKER_CANDIDATES:
        count = 0
        for line in lines:
            if quote and line.startswith(quote):
                continue
            if null_string is not None and (line.startswith(null_string + delimiter)
                                            or line.rstrip("\r\n") == null_string):
                continue
            count += line.startswith(marker)
        if count > best_count:
            best, best_count = marker, count
    return best


def _lengths_say_header(records: Sequence[list[str | None]]) -> bool:
    # Embulk's test for all-string tables: values under a name have much the same length, the name not.
    first = records[0]
    for index, name in enumerate(first):
        if name is None:
            continue
        lengths = [len(value) for row in records[1:] if index < len(row) and (value := row[index]) is not None]
        if not lengths or statistics.pvariance(lengths) > 0.2:
            continue
        average = statistics.fmean(lengths)
        if (len(name) > 1) if average == 0 else abs(average - len(name)) / average > 0.7:
            return True
    return False


def _column_names(header: list[str | None], count: int) -> list[str]:
    names: list[str] = []
    for index in range(count):
        name = (header[index] or "").strip() if index < len(header) else ""
        name = name or f"c{index}"
        unique, suffix = name, 2
        while unique in names:
            unique, suffix = f"{name}_{suffix}", suffix + 1
        names.append(unique)
    return names


def column_types(records: Sequence[Sequence[str | None]]) -> list[tuple[str, str | None]]:
    """(type, format) of each column, from string values; None and '' say nothing about a type."""
    width = max((len(record) for record in records), default=0)
    return [
        value_type([record[index] for record in records if index < len(record) and record[index]])
        for index in range(width)
    ]


def value_type(values: Sequence[Any]) -> tuple[str, str | None]:
    """The narrowest lossless type for all ``values`` (strings, or decoded JSON values)."""
    if not values:
        return "string", None
    if all(isinstance(value, str) for value in values):
        return _string_values_type(values)
    return _json_values_type(values)


def _string_values_type(values: Sequence[str]) -> tuple[str, str | None]:
    if all(value in BOOLEAN_WORDS for value in values):
        return "boolean", None
    timestamp = _common_timestamp_format(values)
    if timestamp is not None:
        return "timestamp", timestamp
    if all(_is_long(value) for value in values):
        return "long", None
    if all(_is_lossless_double(value) for value in values):
        return "double", None
    if all(_is_json_container(value) for value in values):
        return "json", None
    return "string", None


def _is_long(value: str) -> bool:
    # "-0" and "007" would not come back as written.
    return (_LONG.fullmatch(value) is not None and value != "-0" and len(value) <= 20
            and INT64_MIN <= int(value) <= INT64_MAX)


def _is_lossless_double(value: str) -> bool:
    if not _is_long(value) and _DOUBLE.fullmatch(value) is None:
        return False
    if value.lstrip("+-") in ("NaN", "Infinity"):
        return True
    number = float(value)
    if not math.isfinite(number):
        return False
    try:
        return Decimal(value) == Decimal(repr(number))
    except InvalidOperation:
        return False


def _is_json_container(value: str) -> bool:
    if value[:1] not in ("{", "["):
        return False
    try:
        normalize(value, Column("guess", "json"))
    except ValueError:
        return False
    return True


def _common_timestamp_format(values: Sequence[str]) -> str | None:
    """Embulk's TimeFormatGuess over the values, kept only when every value reads with it (else: a string)."""
    from pipeline.formats.timeguess import guess_time_format

    fmt = guess_time_format(values)
    if fmt is None:
        return None
    column = Column("guess", "timestamp", fmt)
    for value in values:
        try:
            normalize(value, column)
        except ValueError:
            return None
    return fmt


def guess_json_columns(records: list[dict[str, Any]]) -> list[dict[str, str]]:
    """Columns for decoded JSON records (JSON lines, Kinesis), in first-seen key order, same type rules."""
    names: dict[str, list[Any]] = {}
    for record in records:
        for name, value in record.items():
            values = names.setdefault(name, [])
            if value is not None and value != "":
                values.append(value)
    return [_column(name, *value_type(values)) for name, values in names.items()]


def _json_values_type(values: Sequence[Any]) -> tuple[str, str | None]:
    if all(isinstance(value, bool) for value in values):
        return "boolean", None
    if all(isinstance(value, (dict, list)) for value in values):
        return "json", None
    numbers = [value for value in values if isinstance(value, (int, float)) and not isinstance(value, bool)]
    if len(numbers) == len(values):
        if all(isinstance(value, int) and INT64_MIN <= value <= INT64_MAX for value in numbers):
            return "long", None
        if all(isinstance(value, float) or abs(value) <= 2**53 for value in numbers):
            return "double", None
        return "string", None
    if all(isinstance(value, str) for value in values):
        timestamp = _common_timestamp_format(values)
        if timestamp is not None:
            return "timestamp", timestamp
    # Values of mixed JSON types keep their JSON form rather than be turned into text.
    if any(isinstance(value, (dict, list)) for value in values):
        return "json", None
    return "string", None
