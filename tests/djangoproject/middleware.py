"""Marks every response Django produced, so tests can tell it from the gateway's."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponseBase

SERVED_BY = ("X-Served-By", "django")


def served_by_django(
    get_response: Callable[[HttpRequest], HttpResponseBase],
) -> Callable[[HttpRequest], HttpResponseBase]:
    """Add ``X-Served-By: django`` to each response."""

    def middleware(request: HttpRequest) -> HttpResponseBase:
        response = get_response(request)
        response[SERVED_BY[0]] = SERVED_BY[1]
        return response

    return middleware
