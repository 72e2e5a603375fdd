"""The one error type of the training side that the CLI reports as an operational failure."""

from __future__ import annotations


class TrainingError(RuntimeError):
    """Training could not run; the message says what the history, store or backend lacked."""
