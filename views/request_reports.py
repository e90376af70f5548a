"""Requests as a table (the rows and headers of /export's CSV and XLSX) and as a chart
(/stats), in the reader's language and time zone; bot/reports.py makes the files.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

from core import requests as rules
from core.enums import RequestStatus
from core.requests import RequestStats
from i18n import Translator
from storage.models import AssistanceRequest
from views import requests as render

COLUMNS = (
    "number", "created_at", "source", "target", "mechanism", "urgency", "subject", "details",
    "status", "created_by", "ack_due_at", "acknowledged_at", "reply_due_at", "completed_at",
    "result", "transferred_to", "overdue",
)
TIME_COLUMNS = {"created_at", "ack_due_at", "acknowledged_at", "reply_due_at", "completed_at"}
STATUS_COLOURS = {
    RequestStatus.open: "#f0a202",
    RequestStatus.accepted: "#2b7bb9",
    RequestStatus.declined: "#c0392b",
    RequestStatus.transferred: "#8e6cbf",
    RequestStatus.completed: "#2e9e5b",
    RequestStatus.cancelled: "#8a8a8a",
}

Cell = str | datetime | None


# --------------------------------------------------------------------------- the table


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


# --------------------------------------------------------------------------- the chart


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
