"""The project's version, in one place.

``pyproject.toml`` reads it (``[tool.setuptools.dynamic]``) for the
distribution's metadata, and ``--version`` prints it, so an editable
install or a run from the source tree can never print a stale number.
"""

__version__ = "0.1.0"
