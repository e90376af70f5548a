"""Request exports (CSV and XLSX) and the statistics chart (PNG).

Rendering is CPU work: handlers run these functions in a thread. The chart draws its
Chinese labels with the bundled `fonts/LiaisonDeskCJK-Regular.otf` (a GB2312 + Big5
subset of Noto Sans CJK SC, SIL OFL), so it needs no fonts on the machine.
"""

from __future__ import annotations

import csv
import io
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from core import requests as rules
from core.enums import RequestStatus
from core.requests import RequestStats
from i18n import Translator
from storage.models import AssistanceRequest
from views import requests as render

FONT_PATH = Path(__file__).resolve().parent / "fonts" / "LiaisonDeskCJK-Regular.otf"
FONT_FAMILY = "Liaison Desk CJK"
FONT_FAMILIES = [FONT_FAMILY, "DejaVu Sans"]
COLUMNS = (
    "number", "created_at", "source", "target", "mechanism", "urgency", "subject", "details",
    "status", "created_by", "ack_due_at", "acknowledged_at", "reply_due_at", "completed_at",
    "result", "transferred_to", "overdue",
)
TIME_COLUMNS = {"created_at", "ack_due_at", "acknowledged_at", "reply_due_at", "completed_at"}
# A cell starting with one of these is a formula to a spreadsheet: never let request
# text (typed by anyone) run as one.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
STATUS_COLOURS = {
    RequestStatus.open: "#f0a202",
    RequestStatus.accepted: "#2b7bb9",
    RequestStatus.declined: "#c0392b",
    RequestStatus.transferred: "#8e6cbf",
    RequestStatus.completed: "#2e9e5b",
    RequestStatus.cancelled: "#8a8a8a",
}

Cell = str | datetime | None


# --------------------------------------------------------------------------- exports


def export_table(
    tr: Translator, requests: Sequence[AssistanceRequest], tz: ZoneInfo, now: datetime
) -> tuple[list[str], list[list[Cell]]]:
    """Header and rows; times as naive local datetimes of the reader's zone."""
    header = [tr(f"requests.export.columns.{column}") for column in COLUMNS]

    def local(moment: datetime | None) -> datetime | None:
        return moment.astimezone(tz).replace(tzinfo=None, microsecond=0) if moment else None

    rows: list[list[Cell]] = []
    for request in requests:
        row = rules.StatsRow(
            mechanism=None, to_unit="", status=request.status, created_at=request.created_at,
            ack_due_at=request.ack_due_at, acknowledged_at=request.acknowledged_at,
            completed_at=request.completed_at, reply_due_at=request.reply_due_at,
        )
        values: dict[str, Cell] = {
            "number": request.number,
            "created_at": local(request.created_at),
            "source": request.from_unit.name,
            "target": request.to_unit.name,
            "mechanism": request.mechanism.name if request.mechanism else "",
            "urgency": tr(f"requests.urgency.{request.urgency.value}"),
            "subject": request.subject,
            "details": request.details or "",
            "status": tr(f"requests.status.{request.status.value}"),
            "created_by": render.person(request.created_by) if request.created_by else "",
            "ack_due_at": local(request.ack_due_at),
            "acknowledged_at": local(request.acknowledged_at),
            "reply_due_at": local(request.reply_due_at),
            "completed_at": local(request.completed_at),
            "result": request.result or "",
            "transferred_to": request.transferred_to.number if request.transferred_to else "",
            "overdue": tr("requests.export.overdue_yes") if rules.is_overdue(row, now)
            else tr("requests.export.overdue_no"),
        }
        rows.append([values[column] for column in COLUMNS])
    return header, rows


def _safe(value: Cell) -> Cell:
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def to_csv(header: Sequence[str], rows: Sequence[Sequence[Cell]]) -> bytes:
    """UTF-8 with a byte-order mark, so Excel opens the Chinese text correctly."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow([
            value.strftime("%Y-%m-%d %H:%M") if isinstance(value, datetime)
            else _safe(value) or "" for value in row
        ])
    return buffer.getvalue().encode("utf-8-sig")


def to_xlsx(header: Sequence[str], rows: Sequence[Sequence[Cell]], title: str) -> bytes:
    from openpyxl import Workbook
    from openpyxl.styles import Alignment, Font
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


def _barh(axis: Any, pairs: Sequence[tuple[str, int]], title: str, colour: str,
          top: int = 10) -> None:
    shown = list(pairs[:top])[::-1]
    labels = [name for name, _ in shown]
    values = [count for _, count in shown]
    bars = axis.barh(labels, values, color=colour)
    axis.bar_label(bars, padding=3, fontsize=9)
    axis.set_title(title, fontsize=12, loc="left")
    axis.spines[["top", "right"]].set_visible(False)
    axis.tick_params(axis="y", labelsize=10)
    axis.set_xlim(0, max(values, default=1) * 1.18 + 0.5)
    axis.xaxis.get_major_locator().set_params(integer=True)


def stats_figure(tr: Translator, stats: RequestStats, tz: ZoneInfo) -> Any:
    """The figure (matplotlib `Figure`, no pyplot): titles, three breakdowns, a summary."""
    from matplotlib.figure import Figure

    start = stats.period.start.astimezone(tz).strftime("%Y-%m-%d")
    end = (stats.period.end - timedelta(seconds=1)).astimezone(tz).strftime("%Y-%m-%d")
    figure = Figure(figsize=(10, 7.2), dpi=110, layout="constrained")
    figure.suptitle(tr("requests.stats.chart_title", start=start, end=end), fontsize=15)
    grid = figure.add_gridspec(2, 2, height_ratios=[1.3, 1])
    _barh(figure.add_subplot(grid[0, 0]), stats.by_mechanism,
          tr("requests.stats.chart_mechanism"), "#2b7bb9")
    _barh(figure.add_subplot(grid[0, 1]), stats.by_unit, tr("requests.stats.chart_unit"),
          "#3a9d8f")
    status_axis = figure.add_subplot(grid[1, 0])
    labels = [tr(f"requests.status.{status.value}") for status, _ in stats.by_status]
    values = [count for _, count in stats.by_status]
    bars = status_axis.bar(labels, values,
                           color=[STATUS_COLOURS[status] for status, _ in stats.by_status])
    status_axis.bar_label(bars, padding=2, fontsize=9)
    status_axis.set_title(tr("requests.stats.chart_status"), fontsize=12, loc="left")
    status_axis.set_ylabel(tr("requests.stats.chart_count"))
    status_axis.spines[["top", "right"]].set_visible(False)
    status_axis.yaxis.get_major_locator().set_params(integer=True)
    summary_axis = figure.add_subplot(grid[1, 1])
    summary_axis.axis("off")
    share = stats.overdue_share
    summary = tr(
        "requests.stats.chart_summary",
        total=stats.total,
        share=f"{share * 100:.0f}%" if share is not None else "—",
        ack=render.duration(tr, stats.median_ack) if stats.median_ack else "—",
        complete=render.duration(tr, stats.median_complete) if stats.median_complete else "—",
    )
    summary_axis.text(0.02, 0.95, summary.replace(" · ", "\n"), va="top", ha="left",
                      fontsize=13, linespacing=1.8, transform=summary_axis.transAxes)
    return figure


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
