"""Sphinx configuration of the fastrnn API reference (built from the docstrings).

    python -m sphinx -W -b html docs/api docs/api/_build/html
"""
import os
import sys

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))

project = "fastrnn"
author = "the fastrnn authors"
extensions = ["sphinx.ext.autodoc", "sphinx.ext.napoleon", "sphinx.ext.viewcode"]
autodoc_default_options = {"members": True, "undoc-members": False, "show-inheritance": True}
autodoc_member_order = "bysource"
# Optional array libraries are imported lazily by fastrnn; never needed to read the docs.
autodoc_mock_imports = ["cupy", "torch"]
napoleon_google_docstring = False
exclude_patterns = ["_build"]
html_theme = "alabaster"
