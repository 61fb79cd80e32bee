"""Reading the `# expect: deliverable=points ...` header that corpus submissions declare."""

from __future__ import annotations

import re
from pathlib import Path

_EXPECT = re.compile(r"^#\s*expect:\s*(.+)$", re.MULTILINE)


def expected_scores(path: Path) -> dict[str, float]:
    """{deliverable: points} from the file's `# expect:` header line; ValueError when there is none."""
    match = _EXPECT.search(path.read_text(encoding="utf-8", errors="replace")[:4000])
    if not match:
        raise ValueError(f"{path} has no '# expect:' header")
    scores: dict[str, float] = {}
    for pair in match.group(1).split():
        name, _, value = pair.partition("=")
        scores[name] = float(value)
    return scores
