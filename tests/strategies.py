"""Hypothesis strategies for the API's documented input patterns."""

from __future__ import annotations

from hypothesis import strategies as st

# The patterns exactly as the API reference documents them.
DOCUMENTED_REPOSITORY = r"(?:[a-z0-9]+(?:[._-][a-z0-9]+)*/)*[a-z0-9]+(?:[._-][a-z0-9]+)*"
DOCUMENTED_DIGEST = r"[a-zA-Z0-9-_+.]+:[a-fA-F0-9]+"
DOCUMENTED_REGISTRY = r"[0-9]{12}"

documented_repository_names = st.from_regex(DOCUMENTED_REPOSITORY, fullmatch=True).filter(
    lambda s: 2 <= len(s) <= 256
)
documented_digests = st.from_regex(DOCUMENTED_DIGEST, fullmatch=True)
documented_registry_ids = st.from_regex(DOCUMENTED_REGISTRY, fullmatch=True)

# Text that is close to valid more often than uniform text would be.
near_misses = st.one_of(
    st.text(),
    st.text(alphabet="ab0_.-/:\n AZ", max_size=12),
    documented_repository_names.map(lambda s: s + "\n"),
    documented_digests.map(lambda s: s.upper() + "/"),
)
