"""Reading a table exported by a spreadsheet, W&B or a paper's supplement, for `ladder import csv`.

Such exports differ in ways that must not change a number: a byte-order mark, CRLF line ends, `;` or tab
separators (Excel in locales with a decimal comma writes `;` and `0,453`), padded or trailing blank header
cells, blank lines, and a dozen spellings of "no value". Each is either read as meant or refused with one
line naming the cell and the fix; none may shift a column or a decimal point silently (an unquoted
`1,279,395,840` once split one number over three columns).
"""

from __future__ import annotations

import csv
import io
import re
import warnings
from pathlib import Path

from ladder.errors import LadderError, read_utf8, require

# Cells that mean "no value" in common exports (pandas, R, Excel, W&B); compared lower-cased.
MISSING = frozenset({"", "na", "n/a", "nan", "-", "--", "\u2013", "\u2014", "null", "none", "#n/a", "?",
                     "missing", "n.a.", "#value!", "#div/0!"})
# Count suffixes (case-insensitive: '190m' is read as millions, as every ladder table means it).
SUFFIX = {"k": 1e3, "m": 1e6, "b": 1e9, "g": 1e9, "t": 1e12}
SEPARATORS = {",": "commas", ";": "semicolons", "\t": "tabs"}
THOUSANDS = re.compile(r"^[+-]?\d{1,3}(,\d{3})+(\.\d*)?([eE][+-]?\d+)?[kKmMbBgGtT]?$")
DECIMAL_COMMA = re.compile(r"^[+-]?\d*,\d+([eE][+-]?\d+)?[kKmMbBgGtT%]?$")
SPACES = re.compile(r"[\s\u00a0\u202f\u2009']")  # 1 279 395 840, 1'279'395'840 (Swiss)


def _read_text(path, what: str) -> str:
    """The file as text: UTF-8 (BOM dropped, errors named by read_utf8), or UTF-16 when it starts with a UTF-16
    byte-order mark (Excel's "Unicode Text" export: tab-separated UTF-16)."""
    try:
        with open(path, "rb") as f:
            head = f.read(2)
    except OSError:
        head = b""
    if head not in (b"\xff\xfe", b"\xfe\xff"):
        return read_utf8(path, what)
    try:
        return Path(path).read_bytes().decode("utf-16")
    except UnicodeDecodeError as e:
        raise LadderError(f"{what}: {path} starts as UTF-16 but is not (offset {e.start}); save it as UTF-8") from None


class Sheet:
    """A table's header and records (dicts by column name), with the separator it was written with.

    `decimal_comma` is true for `;`-separated files and files with a cell like `0,453` that only a decimal
    comma explains: there `0,453` is 0.453 and `1.279.395.840` a count; elsewhere `1,279` is 1279."""

    def __init__(self, path, what: str = "import"):
        text = _read_text(path, what)
        self.path = path
        sep_line = re.match(r"sep=(.)\r?\n", text)  # Excel's 'sep=;' first line names the separator
        text = text[sep_line.end():] if sep_line else text
        head = [line for line in text.splitlines() if line.strip()][:5]  # a title line may come first
        self.separator = sep_line[1] if sep_line else max(
            SEPARATORS, key=lambda s: (max((line.count(s) for line in head), default=0), s == ","))
        # strict: a quote never closed is an error at its line, not the rest of the file read as one cell (before:
        # "no row with an accuracy; check the acc mapping" for one stray `"`)
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=self.separator, strict=True)
        rows = []  # (line number, cells) of the non-blank rows
        try:
            for cells in reader:
                if any(c.strip() for c in cells):
                    rows.append((reader.line_num, cells))
        except csv.Error as e:  # a field over the csv module's 128 KiB limit, a NUL inside quotes, a quote left open
            start = rows[-1][0] + 1 if rows else 1  # where the record the reader was inside began (or later)
            why = (f'has a quote (") opened on line {start} or after that is never closed' if "end of data" in str(e)
                   else f"after line {reader.line_num}: {e}")
            raise LadderError(f"{what}: {path} {why}; fix the CSV (is it the right file?)") from None
        require(bool(rows), str(path), "is empty", "export the table with its header row")
        # lines of one cell around the table (a caption above the header, notes below) are not rows of it
        lone = [sum(bool(c.strip()) for c in cells) == 1 for _, cells in rows]
        top = next((i for i, one in enumerate(lone) if not one), 0)
        notes = [line for (line, cells), one in zip(rows[top + 1:], lone[top + 1:]) if one and len(cells) == 1]
        if top or notes:
            warnings.warn(f"{path}: left out {top + len(notes)} line(s) of one cell (a title or note: line "
                          f"{', '.join(str(line) for line, _ in rows[:top])}{', ' if top and notes else ''}"
                          f"{', '.join(str(line) for line in notes[:3])})", stacklevel=3)
            rows = rows[top:]
            dropped = set(notes)
            rows = rows[:1] + [(line, cells) for line, cells in rows[1:] if line not in dropped]
        (_, header), body = rows[0], rows[1:]
        header = [h.strip() for h in header]
        repeats = [line for line, cells in body if [c.strip() for c in cells] == header]
        if repeats:  # files joined by `cat a.csv b.csv`: the second file's header is not a row
            warnings.warn(f"{path}: left out {len(repeats)} repeat(s) of the header (line {repeats[0]}: files joined?)",
                          stacklevel=3)
            dropped = set(repeats)
            body = [(line, cells) for line, cells in body if line not in dropped]
        self.decimal_comma = self.separator == ";"  # and see read_decimal_commas
        self.header = self._named_columns(header, body)
        self.records, self.lines = [], []
        for line, cells in body:
            extra = cells[len(header):]
            require(len(cells) >= len(header) and not any(c.strip() for c in extra), f"{path}:{line}",
                    f"has {len(cells)} fields, the header {len(header)}",
                    "quote numbers written with thousands commas (\"1,279,395,840\") or drop the commas; a row "
                    "from another table or a stray separator also does this" if extra else "fill the missing cells")
            self.records.append({h: c for h, c in zip(header, cells) if h})
            self.lines.append(line)

    def read_decimal_commas(self, columns) -> None:
        """One locale per file: commas are decimal in a `;` file, or where a cell of these (numeric) columns is
        one only a decimal comma explains (0,453; 3,7). Other columns (tags, notes) are not evidence."""
        self.decimal_comma = self.separator == ";" or any(
            "," in c and DECIMAL_COMMA.match(SPACES.sub("", c)) and not THOUSANDS.match(SPACES.sub("", c))
            for rec in self.records for c in (rec.get(col, "") for col in columns))

    def _named_columns(self, header: list[str], body) -> list[str]:
        """The header's named columns. Unnamed columns are dropped when empty (a spreadsheet's trailing blank
        columns) and refused when they hold values; a name given twice is refused (the csv module keeps the
        last of two `acc_mmlu` columns without a word)."""
        for j, h in enumerate(header):
            used = next((line for line, cells in body if not h and j < len(cells) and cells[j].strip()), None)
            require(used is None, f"{self.path}:{used}", f"column {j + 1} has values but no name in the header",
                    "name it in the header row (or delete the column)")
        named = [h for h in header if h]
        twice = sorted({h for h in named if named.count(h) > 1})
        if twice:
            raise LadderError(f"{self.path}: the header names {twice[0]!r} {named.count(twice[0])} times; rename the "
                              "copies so each column has its own name")
        return named

    def number(self, value, where: str, column: str) -> tuple[float, bool]:
        """(the cell as a float, whether it carried a % sign). Missing-value spellings are NaN; k/M/B/T
        suffixes, thousands separators and decimal commas (in `;` files and files that show one) are read; a
        decimal comma is never read as a thousands separator (0,453 -> 453)."""
        try:  # a plain number (most cells): the same value the rules below give it
            x = float(value)
            return x, False
        except (TypeError, ValueError):
            pass
        v = SPACES.sub("", value or "")
        if v.lower() in MISSING:
            return float("nan"), False
        percent = v.endswith("%")
        v = v[:-1] if percent else v
        if self.decimal_comma:
            v = v.replace(".", "").replace(",", ".") if "," in v else v.replace(".", "") if v.count(".") > 1 else v
        elif "," in v:  # cannot fail the pattern: a cell that does sets decimal_comma (kept as a guard)
            require(bool(THOUSANDS.match(v)), where, f"column {column!r} has {value!r}, not a number",
                    "write decimal points, or export the table ';'-separated (read with decimal commas)")
            v = v.replace(",", "")
        try:
            x = float(v[:-1]) * SUFFIX[v[-1].lower()] if v and v[-1].lower() in SUFFIX else float(v)
        except ValueError:
            raise LadderError(f"{where}: column {column!r} has {value!r}, not a number (k/M/B/T suffixes, % and "
                              "blanks such as NA allowed); fix the cell or map another column") from None
        return (x / 100 if percent else x), percent
