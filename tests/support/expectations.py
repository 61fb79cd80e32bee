"""Reading the `# expect: deliverable=points ...` header that corpus submissions declare.

A submission whose score depends on whether the CUDA cases ran (a `.cpu()` round trip passes where the grader
has no GPU) declares its GPU scores on a second line, `# expect-cuda: deliverable=points ...`; without one, the
same scores are expected either way.
"""

from __future__ import annotations

import re
from pathlib import Path

_EXPECT = re.compile(r"^#\s*expect:\s*(.+)$", re.MULTILINE)
_EXPECT_CUDA = re.compile(r"^#\s*expect-cuda:\s*(.+)$", re.MULTILINE)


def expected_scores(path: Path, cuda: bool = False) -> dict[str, float]:
    """{deliverable: points} from the file's header; `cuda`: for a run whose CUDA cases ran.

    ValueError when there is no `# expect:` line.
    """
    head = path.read_text(encoding="utf-8", errors="replace")[:4000]
    match = _EXPECT.search(head)
    if not match:
        raise ValueError(f"{path} has no '# expect:' header")
    gpu = _EXPECT_CUDA.search(head) if cuda else None
    return _parse((gpu or match).group(1))


def _parse(pairs: str) -> dict[str, float]:
    scores: dict[str, float] = {}
    for pair in pairs.split():
        name, _, value = pair.partition("=")
        scores[name] = float(value)
    return scores
