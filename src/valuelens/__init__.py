"""valuelens: audit large language models for cross-cultural value alignment."""

__version__ = "0.1.0"

from valuelens.errors import ValueLensError  # noqa: E402

__all__ = ["ValueLensError", "__version__"]
