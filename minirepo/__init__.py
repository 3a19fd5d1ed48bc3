"""minirepo: a private Python package index that runs with one command."""

__version__ = "0.2.0.dev0"
