"""Settings for the whole suite."""

from __future__ import annotations

from hypothesis import HealthCheck, settings

# Hypothesis's deadline (200 ms an example) and its too-slow health check judge speed, not
# correctness, and `make test` runs several pytest workers on a 2-core machine: an example that
# waits for a core can take 300 ms. The property tests keep every example; only the clock goes.
settings.register_profile(
    "suite", deadline=None, suppress_health_check=[HealthCheck.too_slow], print_blob=True
)
settings.load_profile("suite")
