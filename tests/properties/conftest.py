"""Hypothesis profiles for the property tests: reproducible in CI, longer on demand.

``hub-ci`` (the default) is derandomized and keeps no example database, so every run tries
the same inputs and a failure prints the blob that replays it (``@reproduce_failure``).
``hub-chaos`` is the same without derandomizing, for ``make chaos``: fresh inputs each run.
Both are registered in ``tests.properties.strategies`` (imported here) and loaded here.

Environment: ``HUB_FUZZ_EXAMPLES=5000`` sets the examples of every pure-parser property (the
HTTP property takes a tenth of it per route, and pytest-timeout grows to match);
``HUB_FUZZ_PROFILE=hub-chaos`` picks the random profile. The tests also apply the profile
through ``strategies.fuzz``, so they do not depend on which conftest loaded a profile last.
"""

from __future__ import annotations

from hypothesis import settings

from tests.properties.strategies import PROFILE

settings.load_profile(PROFILE)
