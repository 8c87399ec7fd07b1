"""What can go wrong in nlu.

    NLUError
     ├── TrainingDataError   a training file is missing or malformed
     ├── ModelError          a model directory is missing, incomplete or of another format
     └── NLUUnavailable      a remote backend (Rasa) did not answer or answered nonsense
"""

from __future__ import annotations


class NLUError(Exception):
    """The root of every error nlu raises."""


class TrainingDataError(NLUError):
    """A training file is missing or malformed; the message names the file and entry."""


class ModelError(NLUError):
    """A model directory cannot be loaded."""


class NLUUnavailable(NLUError):
    """A remote NLU backend did not answer, or answered something we cannot read."""
