"""What can go wrong in griddesk's own words.

GriddeskError
├── RegistryError        the registry file is invalid (names file, line and field)
├── NotAllowed           this person may not do that (someone else's case, a resident's action…)
├── NotFound             no such case, building, post or proposal
├── InvalidState         the case or proposal is not in a state that allows this
└── BadInput             empty, oversized or unreadable input
"""

from __future__ import annotations


class GriddeskError(Exception):
    """Root of griddesk's errors; `key` names the catalogue message shown to the person."""

    key = "error.generic"

    def __init__(self, message: str = "", **values: object) -> None:
        super().__init__(message or self.key)
        self.values = values


class RegistryError(GriddeskError):
    key = "error.registry"

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class NotAllowed(GriddeskError):
    key = "error.not_allowed"


class NotFound(GriddeskError):
    key = "error.not_found"


class InvalidState(GriddeskError):
    key = "error.invalid_state"


class BadInput(GriddeskError):
    key = "error.bad_input"
