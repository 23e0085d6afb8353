"""Sphinx configuration for pyro_ebm."""

import os
import sys

sys.path.insert(0, os.path.abspath(".."))

project = "pyro_ebm"
author = "pyro_ebm contributors"
copyright = "2026, pyro_ebm contributors"
release = "0.1.0"

extensions = ["sphinx.ext.autodoc", "sphinx.ext.napoleon", "sphinx.ext.mathjax", "sphinx.ext.viewcode"]
autodoc_member_order = "bysource"
autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_typehints = "description"
nitpicky = False
html_theme = "alabaster"
exclude_patterns = ["_build"]
suppress_warnings = ["config.cache"]
