"""minirepo: a private Python package index that runs with one command."""

__version__ = "0.1.0"
