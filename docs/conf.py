"""Sphinx configuration: MyST pages, API reference from docstrings, warnings are errors."""

project = "ecr-layers"
author = "ecr-layers developers"
extensions = ["myst_parser", "sphinx.ext.autodoc", "sphinx.ext.intersphinx"]
source_suffix = {".md": "markdown"}
exclude_patterns = ["_build"]
myst_heading_anchors = 3
default_role = "py:obj"
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": True}
intersphinx_mapping: dict[str, tuple[str, None]] = {}
nitpicky = False
suppress_warnings = ["myst.xref_missing"]
html_theme = "furo"
html_title = "ecr-layers"
