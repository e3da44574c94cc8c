"""Decoded JSON from outside, made safe to keep: no lone surrogates.

JSON can carry a lone UTF-16 surrogate (``"\\ud83d"``: an emoji cut in half by a client or a
provider that truncates text), and ``json.loads`` of bytes decodes with ``surrogatepass``,
so the parsed strings may hold code points that UTF-8 cannot encode. Kept as they are, they
reach Redis (whose client encodes strictly) and fail there: the webhook answers 500, the
provider retries the same payload forever, a call log line blocks its tailer. Each lone
surrogate becomes U+FFFD, as a UTF-8 decoder with ``errors="replace"`` would have done.
"""

from __future__ import annotations

import re
from typing import Any

_SURROGATE = re.compile("[\ud800-\udfff]")


def _clean(text: str) -> str:
    if text.isascii() or not _SURROGATE.search(text):
        return text
    return _SURROGATE.sub("\ufffd", text)


def without_lone_surrogates(value: Any) -> Any:
    """``value`` (what ``json.loads`` returned) with every lone surrogate in its strings and
    keys replaced by U+FFFD. Lists and dicts are changed in place; iterative, so nesting as
    deep as the decoder allows is fine."""
    if isinstance(value, str):
        return _clean(value)
    stack: list[Any] = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            for i, item in enumerate(node):
                if isinstance(item, str):
                    node[i] = _clean(item)
                elif isinstance(item, list | dict):
                    stack.append(item)
        elif isinstance(node, dict):
            for key in [k for k in node if isinstance(k, str) and _clean(k) != k]:
                node[_clean(key)] = node.pop(key)
            for key, item in node.items():
                if isinstance(item, str):
                    node[key] = _clean(item)
                elif isinstance(item, list | dict):
                    stack.append(item)
    return value
