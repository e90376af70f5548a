"""/export requests (CSV and XLSX contents) and /stats (figures and a chart whose
Chinese labels are real glyphs of the bundled font), on both databases."""

from __future__ import annotations

import csv
import io
import warnings
from collections.abc import AsyncIterator
from datetime import UTC
from datetime import datetime
from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest
from matplotlib.font_manager import findfont
from matplotlib.ft2font import FT2Font
from matplotlib.text import Text
from openpyxl import load_workbook
from PIL import Image

from bot import reports
from bot.emulator import ApiCall
from bot.emulator import BotApiEmulator
from core.enums import RequestStatus
from core.periods import Period
from core.requests import RequestStats
from i18n import LANGUAGES
from i18n import Translator
from storage.db import Database
from tests.test_requests_support import PEOPLE
from tests.test_requests_support import SICHUAN_ROOM
from tests.test_requests_support import T0
from tests.test_requests_support import Directory
from tests.test_requests_support import make_directory
from tools.clock import FakeClock
from tools.testing import BotHarness
from views.request_reports import stats_figure

REQUESTER, DUTY, COORDINATOR, OUTSIDER = 101, 201, 401, 501
SHANGHAI = ZoneInfo("Asia/Shanghai")


@pytest.fixture
async def directory(db: Database) -> Directory:
    return await make_directory(db)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
async def bot(
    emulator: BotApiEmulator, database_url: str, directory: Directory, clock: FakeClock
) -> AsyncIterator[BotHarness]:
    for telegram_id, name, _role, _unit, language in PEOPLE.values():
        emulator.add_user(telegram_id, name, language_code=language.lower())
    emulator.add_group(SICHUAN_ROOM, "四川省厅值班室", members=[DUTY])
    async with BotHarness(emulator, database_url, now=clock) as harness:
        yield harness


async def some_requests(bot: BotHarness, clock: FakeClock) -> None:
    """Three requests: a flash one accepted after 10 minutes; a flash one accepted after
    30 (late) and completed at 2 hours, whose subject looks like a formula; a routine one
    still open (within its 24 hours)."""
    cards = []
    for subject, urgency in (("协查涉枪线索", "特急"), ("=HYPERLINK(\"x\")", "特急"),
                             ("查询户籍", "平急")):
        sent = await bot.send(REQUESTER, f"/request 四川 治安管控互动 {urgency} {subject}")
        await bot.press(REQUESTER, sent, "提交")
        cards += [c for c in (await bot.deliver()).messages if c.chat_id == SICHUAN_ROOM]
    clock.set(T0 + timedelta(minutes=10))
    await bot.press(DUTY, cards[0], "接收")
    await bot.deliver()
    clock.set(T0 + timedelta(minutes=30))
    await bot.press(DUTY, cards[1], "接收")
    edit = next(c for c in (await bot.deliver()).calls if c.method == "editMessageText")
    clock.set(T0 + timedelta(hours=2))
    prompt = next(c for c in (await bot.press(DUTY, edit, "完成")).messages
                  if (c.params.get("reply_markup") or {}).get("force_reply"))
    await bot.feed(bot.emulator.make_message_update(DUTY, SICHUAN_ROOM, "已查明",
                                                    reply_to=prompt.message_ref))
    await bot.deliver()


def document(call: ApiCall) -> tuple[str, bytes]:
    (name, content), = call.files.values()
    return name, content


async def test_export_sends_csv_and_xlsx_with_the_requests(
    bot: BotHarness, clock: FakeClock
) -> None:
    await some_requests(bot, clock)
    clock.set(T0 + timedelta(hours=3))
    sent = await bot.send(REQUESTER, "/export requests")
    csv_call, xlsx_call = [c for c in sent.calls if c.method == "sendDocument"]
    name, content = document(csv_call)
    assert name == "requests-20261101-20261201.csv"
    assert content.startswith(b"\xef\xbb\xbf")  # BOM: Excel reads UTF-8
    rows = list(csv.reader(io.StringIO(content.decode("utf-8-sig"))))
    assert rows[0][:4] == ["编号", "发起时间", "发起单位", "承办单位"]
    by_number = {row[0]: dict(zip(rows[0], row, strict=True)) for row in rows[1:]}
    assert sorted(by_number) == ["XZ-2026-000001", "XZ-2026-000002", "XZ-2026-000003"]
    first = by_number["XZ-2026-000001"]
    assert first["发起时间"] == "2026-12-01 09:00" and first["承办单位"] == "四川省公安厅"
    assert first["紧急程度"] == "特急" and first["协作机制"] == "治安管控互动"
    assert first["状态"] == "已接收" and first["确认时间"] == "2026-12-01 09:10"
    assert first["是否超时"] == "否"
    second = by_number["XZ-2026-000002"]
    assert second["主题"] == "'=HYPERLINK(\"x\")"  # never a live formula
    assert (second["状态"], second["办理结果"], second["是否超时"]) == ("已完成", "已查明", "是")
    assert by_number["XZ-2026-000003"]["状态"] == "待接收"
    name, content = document(xlsx_call)
    assert name.endswith(".xlsx")
    sheet = load_workbook(io.BytesIO(content)).active
    assert sheet.title == "协作请求"
    header = [cell.value for cell in sheet[1]]
    assert header == rows[0]
    values = {row[0]: row for row in sheet.iter_rows(min_row=2, values_only=True)}
    assert values["XZ-2026-000001"][1] == datetime(2026, 12, 1, 9, 0)
    assert sheet["B2"].number_format == "yyyy-mm-dd hh:mm"
    assert values["XZ-2026-000002"][6] == "'=HYPERLINK(\"x\")"


async def test_export_filters_and_visibility(bot: BotHarness, clock: FakeClock) -> None:
    await some_requests(bot, clock)
    sent = await bot.send(REQUESTER, "/export requests 已完成")
    _, content = document(next(c for c in sent.calls if c.method == "sendDocument"))
    rows = list(csv.reader(io.StringIO(content.decode("utf-8-sig"))))
    assert [row[0] for row in rows[1:]] == ["XZ-2026-000002"]
    sent = await bot.send(REQUESTER, "/export requests 2026-10")
    assert "没有协作请求" in sent.text and not any(c.method == "sendDocument" for c in sent.calls)
    sent = await bot.send(OUTSIDER, "/export requests")
    assert "没有协作请求" in sent.text
    sent = await bot.send(REQUESTER, "/export")
    assert "用法" in sent.text
    sent = await bot.send(DUTY, "/export requests", chat_id=SICHUAN_ROOM)
    assert "私聊" in sent.text and not any(c.method == "sendDocument" for c in sent.calls)


async def test_stats_for_coordinators_chart_and_text(bot: BotHarness, clock: FakeClock) -> None:
    await some_requests(bot, clock)
    clock.set(T0 + timedelta(hours=3))
    sent = await bot.send(DUTY, "/stats")
    assert "无权" in sent.text and not any(c.method == "sendPhoto" for c in sent.calls)
    sent = await bot.send(COORDINATOR, "/stats month")
    [photo] = [c for c in sent.calls if c.method == "sendPhoto"]
    _, png = document(photo)
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG" and image.size[0] >= 800
    text = sent.texts[-1]  # the coordinator reads English
    assert "Requests: 3" in text and "Overdue: 1 (33%)" in text
    assert "Median time to accept: 20 min" in text
    assert "Median time to complete: 2 h" in text
    assert "治安管控互动 3" in text and "四川 3" in text
    sent = await bot.send(COORDINATOR, "/stats 火星")
    assert "Cannot read “火星”" in sent.text


# --------------------------------------------------------------------------- glyphs

STATS = RequestStats(
    period=Period(datetime(2026, 11, 1, tzinfo=UTC) - timedelta(hours=8),
                  datetime(2026, 12, 1, tzinfo=UTC) - timedelta(hours=8)),
    total=12,
    by_mechanism=[("治安管控互动", 5), ("情报信息互享", 4), ("警务保障互补", 3)],
    by_unit=[("四川", 6), ("新疆生产建设兵团", 4), ("雲南", 2)],
    by_status=[(RequestStatus.open, 2), (RequestStatus.completed, 8),
               (RequestStatus.declined, 2)],
    median_ack=timedelta(minutes=12), median_complete=timedelta(hours=27), overdue=3,
)


def ink(font_path: str, char: str) -> tuple[bytes, int]:
    """The glyph bitmap FreeType draws for `char` with this font, and how much ink."""
    font = FT2Font(font_path)
    font.set_size(48, 72)
    font.set_text(char, 0.0)
    font.draw_glyphs_to_bitmap()
    image = font.get_image()
    return bytes(image.tobytes()), int((image > 0).sum())


def test_the_bundled_font_draws_chinese_and_a_fallback_font_would_not() -> None:
    ours = str(reports.FONT_PATH)
    first, first_ink = ink(ours, "治")
    second, second_ink = ink(ours, "安")
    assert first_ink > 100 and second_ink > 100 and first != second
    # The control: DejaVu Sans has no 治 or 安 and draws the same empty box for both.
    dejavu = str(findfont("DejaVu Sans"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "Glyph … missing": the point here
        assert ink(dejavu, "治")[0] == ink(dejavu, "安")[0]
    assert FT2Font(dejavu).get_char_index(ord("治")) == 0


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_label_of_the_chart_is_drawn_with_real_glyphs(language: str) -> None:
    tr = Translator(language)
    with reports.chart_style():
        figure = stats_figure(tr, STATS, SHANGHAI)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            png = reports.png(figure)
        texts = [t for t in figure.findobj(Text) if t.get_text().strip()]
        drawn = "".join(t.get_text() for t in texts)
        fonts = {str(findfont(t.get_fontproperties())) for t in texts}
    assert not [w for w in caught if "missing from" in str(w.message)]
    assert fonts == {str(reports.FONT_PATH)}
    face = FT2Font(str(reports.FONT_PATH))
    missing = {c for c in drawn if not c.isspace() and face.get_char_index(ord(c)) == 0}
    assert missing == set()
    assert "治安管控互动" in drawn and "新疆生产建设兵团" in drawn and "雲南" in drawn
    if language != "en":
        assert "按协作机制" in drawn or "按協作機制" in drawn
    assert Image.open(io.BytesIO(png)).format == "PNG"


def test_stats_chart_bytes() -> None:
    png = reports.stats_chart(Translator("zh-Hans"), STATS, SHANGHAI)
    image = Image.open(io.BytesIO(png)).convert("L")
    assert image.size == (1100, 792)
    # Not blank: a good part of the image is drawn.
    assert sum(image.histogram()[:200]) > 20_000
