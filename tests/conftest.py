"""Test configuration: property tests are derandomized so that every run, local or CI, draws the same
examples and a failure is reproducible. ``HYPOTHESIS_PROFILE=explore`` draws fresh random examples."""

import os

from hypothesis import settings

settings.register_profile("default", derandomize=True, print_blob=True)
settings.register_profile("explore", derandomize=False, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))
