"""Refusals of a page: a bad parameter is a 400 that says what was wrong, an unknown
decomposition, module or component a 404."""

from __future__ import annotations


class PageError(Exception):
    """The page cannot be shown; `status` is the HTTP status of the error page."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def bad_parameter(message: str) -> PageError:
    return PageError(400, message)


def not_found(message: str) -> PageError:
    return PageError(404, message)
