"""taskbench: one distribution, one namespace.

The top-level folders are installed under it (``engine/`` as ``taskbench.engine``,
``comparisons/`` as ``taskbench.comparisons``, ...); see ``[tool.setuptools]`` in
``pyproject.toml``. This package holds only the root ``taskbench`` command.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("taskbench")
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"
