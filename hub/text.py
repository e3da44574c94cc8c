"""Outside words inside the hub's own sentences.

A citizen's name, a subject or a provider's error text may carry Unicode direction controls;
a right-to-left override in one would reorder every word the hub writes after it (a phishing
trick: "… ticket closed" shown as "… desolc tekcit"). Every sentence that inserts an outside
value (console translations, alert texts, call summaries) isolates it here, one rule for all.
"""

from __future__ import annotations

import re

# Unicode's explicit direction controls (embeddings, overrides, isolates).
BIDI_CONTROLS = re.compile("[\u202a-\u202e\u2066-\u2069]")


def isolate(value: str) -> str:
    """``value`` wrapped in FSI … PDI (U+2068, U+2069) when it carries direction controls, so
    that the PDI ends every override opened inside it and the words after it keep their
    order; any other value is left as it is (most text has none, and stays byte-identical)."""
    return f"\u2068{value}\u2069" if BIDI_CONTROLS.search(value) else value
