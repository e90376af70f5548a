"""The files of reports: CSV and XLSX from a table's header and rows, PNG from a chart
(views/request_reports.py renders the requests' table and chart).

Making them is CPU work: handlers run these functions in a thread. Charts draw their
Chinese labels with the bundled `fonts/LiaisonDeskCJK-Regular.otf` (a GB2312 + Big5
subset of Noto Sans CJK SC, SIL OFL), so they need no fonts on the machine.
"""

from __future__ import annotations

import csv
import io
import threading
from collections.abc import Callable
from collections.abc import Iterator
from collections.abc import Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any
from typing import TextIO
from zoneinfo import ZoneInfo

from core.requests import RequestStats
from i18n import Translator
from views.request_reports import COLUMNS
from views.request_reports import TIME_COLUMNS
from views.request_reports import Cell
from views.request_reports import stats_figure

FONT_PATH = Path(__file__).resolve().parent / "fonts" / "LiaisonDeskCJK-Regular.otf"
FONT_FAMILY = "Liaison Desk CJK"
FONT_FAMILIES = [FONT_FAMILY, "DejaVu Sans"]
# A cell starting with one of these is a formula to a spreadsheet: never let request
# text (typed by anyone) run as one.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


# --------------------------------------------------------------------------- exports


def _safe(value: Cell) -> Cell:
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def csv_writer(stream: TextIO) -> Callable[[Sequence[Cell]], None]:
    """Writes rows to `stream` as our CSV files hold them: CRLF lines, times to the
    minute, no cell that a spreadsheet would run as a formula."""
    writer = csv.writer(stream, lineterminator="\r\n")

    def write(row: Sequence[Cell]) -> None:
        writer.writerow([
            value.strftime("%Y-%m-%d %H:%M") if isinstance(value, datetime)
            else _safe(value) or "" for value in row
        ])

    return write


def to_csv(header: Sequence[str], rows: Sequence[Sequence[Cell]]) -> bytes:
    """UTF-8 with a byte-order mark, so Excel opens the Chinese text correctly (a file
    written a row at a time: open it with encoding "utf-8-sig" and use `csv_writer`)."""
    buffer = io.StringIO()
    write = csv_writer(buffer)
    write(header)
    for row in rows:
        write(row)
    return buffer.getvalue().encode("utf-8-sig")


def to_xlsx(header: Sequence[str], rows: Sequence[Sequence[Cell]], title: str) -> bytes:
    from openpyxl import Workbook
    from openpyxl.styles import Alignment
    from openpyxl.styles import Font
    from openpyxl.utils import get_column_letter

    workbook = Workbook()
    sheet = workbook.active
    sheet.title = title[:31]
    sheet.append(list(header))
    for cell in sheet[1]:
        cell.font = Font(bold=True)
    for row in rows:
        sheet.append([_safe(value) for value in row])
    for index, column in enumerate(COLUMNS, start=1):
        letter = get_column_letter(index)
        if column in TIME_COLUMNS:
            for cell in sheet[letter][1:]:
                cell.number_format = "yyyy-mm-dd hh:mm"
            width = 17
        elif column in ("subject", "details", "result"):
            width = 40
            for cell in sheet[letter][1:]:
                cell.alignment = Alignment(wrap_text=True, vertical="top")
        else:
            width = max(10, min(30, 2 + max((len(str(r[index - 1] or "")) for r in rows),
                                            default=0)))
        sheet.column_dimensions[letter].width = width
    sheet.freeze_panes = "B2"
    sheet.auto_filter.ref = sheet.dimensions
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


# --------------------------------------------------------------------------- the chart

_matplotlib_lock = threading.Lock()
_font_registered = False


def _register_font() -> None:
    global _font_registered
    if not _font_registered:
        from matplotlib import font_manager

        font_manager.fontManager.addfont(str(FONT_PATH))
        _font_registered = True


@contextmanager
def chart_style() -> Iterator[None]:
    """Matplotlib settings for our charts (the bundled CJK font first), one at a time:
    rcParams are process-wide."""
    import matplotlib

    with _matplotlib_lock, matplotlib.rc_context(
        {"font.family": FONT_FAMILIES, "axes.unicode_minus": False}
    ):
        _register_font()
        yield


def png(figure: Any) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    buffer = io.BytesIO()
    FigureCanvasAgg(figure).print_png(buffer)
    return buffer.getvalue()


def stats_chart(tr: Translator, stats: RequestStats, tz: ZoneInfo) -> bytes:
    """The chart as PNG bytes."""
    with chart_style():
        return png(stats_figure(tr, stats, tz))
