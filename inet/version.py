"""The package version, in one place: pyproject.toml reads it, checkpoints and summary.json record it."""
__version__ = "0.1.0"
