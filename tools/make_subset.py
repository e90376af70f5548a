"""Rebuild LiaisonDeskCJK-Regular.otf from Noto Sans CJK SC Regular (not run at runtime).

    .venv/bin/python tools/make_subset.py NotoSansCJKsc-Regular.otf \
        bot/fonts/LiaisonDeskCJK-Regular.otf

Keeps the ideographs of GB2312 and Big5 (Simplified and Traditional unit names, labels in
both scripts), Latin, general and CJK punctuation, full-width forms and a few symbol
blocks. A subset is a modified font under the SIL OFL 1.1, so it gets its own name.
"""

from __future__ import annotations

import sys

from fontTools import subset
from fontTools.ttLib import TTFont

FAMILY, POSTSCRIPT = "Liaison Desk CJK", "LiaisonDeskCJK-Regular"
BLOCKS = [
    (0x20, 0x7E), (0xA0, 0x17F), (0x2000, 0x206F), (0x2100, 0x214F), (0x2190, 0x21FF),
    (0x2460, 0x24FF), (0x2500, 0x257F), (0x25A0, 0x25FF), (0x3000, 0x303F), (0xFF00, 0xFFEF),
]


def wanted_code_points() -> set[int]:
    points = {cp for low, high in BLOCKS for cp in range(low, high + 1)}
    for cp in range(0x4E00, 0xA000):
        for encoding in ("gb2312", "big5"):
            try:
                chr(cp).encode(encoding)
            except UnicodeEncodeError:
                continue
            points.add(cp)
            break
    return points


def rename(font: TTFont) -> None:
    for record in font["name"].names:
        if record.nameID in (1, 16, 21):
            record.string = FAMILY
        elif record.nameID in (4, 18):
            record.string = FAMILY + " Regular"
        elif record.nameID == 3:
            record.string = "1.004;" + POSTSCRIPT + ";subset"
        elif record.nameID in (6, 20):
            record.string = POSTSCRIPT
    font["name"].setName(
        "Subset of Noto Sans CJK SC Regular 1.004 (GB2312 and Big5 ideographs, Latin, "
        "punctuation) for Liaison Desk charts.", 10, 3, 1, 0x409)
    font["CFF "].cff.fontNames = [POSTSCRIPT]


def main(source: str, target: str) -> None:
    font = TTFont(source)
    options = subset.Options()
    options.layout_features = []
    options.name_IDs = ["*"]
    options.name_languages = ["*"]
    options.notdef_outline = True
    subsetter = subset.Subsetter(options)
    subsetter.populate(unicodes=wanted_code_points())
    subsetter.subset(font)
    rename(font)
    font.save(target)


if __name__ == "__main__":
    main(*sys.argv[1:3])
