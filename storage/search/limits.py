"""How much a search returns: a page's largest size and the cap of counted hits.

The cap is read as `limits.RESULT_CAP` wherever it is used, so that a test can lower it
in one place.
"""

from __future__ import annotations

MAX_LIMIT = 200
# Hits are counted (and paged) up to this many: "200+". Counting every match of a
# frequent term is what makes search slow; nobody pages past this.
RESULT_CAP = 200


def clamp(offset: int, limit: int) -> tuple[int, int]:
    """A page's offset and size as asked, within bounds."""
    return max(0, int(offset)), max(0, min(int(limit), MAX_LIMIT))
