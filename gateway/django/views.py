"""The delegate endpoint: the gateway asks the app whether a request may have a file.

With ``GATEWAY_AUTH_DELEGATE=/media-auth/`` the gateway sends a GET, carrying the
original request's Cookie and Authorization headers and ``X-Media-Path`` (the
relative media path, percent-encoded UTF-8), for every media request without a valid
signature. 2xx serves the file; 403 and 404 pass on to the client::

    # urls.py
    path("media-auth/", authorize_media),                         # any signed-in user
    path("media-auth/", authorize_media_view(owns_document)),     # a custom rule

Every answer carries ``Cache-Control: private``: no shared cache between the gateway
and Django may keep it. With ``GATEWAY_AUTH_CACHE_TTL`` set, a decision for a signed-in
user says ``max-age`` of that many seconds, which the gateway may remember for the same
session and target; anything else says ``max-age=0``, never remembered.

Only the gateway's own ``X-Media-Path`` reaches this view: the gateway drops a client's
copy in every spelling a server maps to the same name (``X_Media_Path``, repeats), and
a value with a comma (two copies joined) is refused here all the same.
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import unquote

from django.core.exceptions import ImproperlyConfigured, PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotAllowed

from ..exceptions import RequestError
from ..paths import validate_relpath

__all__ = ["MEDIA_PATH_HEADER", "authorize_media", "authorize_media_view"]

MEDIA_PATH_HEADER = "X-Media-Path"

#: ``permission(request, path)``: may this request have the media path ``path``
#: (``documents/a.pdf``, decoded, relative to MEDIA_URL)?
Permission = Callable[[HttpRequest, str], bool]


def authorize_media_view(
    permission: Permission | None = None, *, login_required: bool = True
) -> Callable[[HttpRequest], HttpResponse]:
    """Build a delegate view: 204 when allowed, 403 when not, 400 without a valid path.

    :param permission: decides for a signed-in user, after ``login_required``; it may
        also raise ``PermissionDenied`` (403) or ``Http404`` (404). None allows every
        signed-in user.
    :param login_required: anonymous requests get 403 before ``permission`` runs, so a
        rule like ``owner=request.user`` never sees an ``AnonymousUser``. False hands
        anonymous requests to ``permission`` too (a share link, say).
    """

    def authorize_media(request: HttpRequest) -> HttpResponse:
        response = _decide(request, permission, login_required)
        ttl = 0
        user = getattr(request, "user", None)
        if response.status_code < 300 and user is not None and user.is_authenticated:
            from . import gateway_settings

            ttl = gateway_settings().auth_cache_ttl
        response["Cache-Control"] = f"private, max-age={ttl}"
        return response

    return authorize_media


def _decide(
    request: HttpRequest, permission: Permission | None, login_required: bool
) -> HttpResponse:
    if request.method not in ("GET", "HEAD"):
        return HttpResponseNotAllowed(["GET", "HEAD"])
    raw = request.headers.get(MEDIA_PATH_HEADER)
    if raw is None:
        return _text(400, f"{MEDIA_PATH_HEADER} header missing")
    if "," in raw:
        # The gateway encodes commas; a raw one means two copies joined by a server.
        return _text(400, f"{MEDIA_PATH_HEADER} appears more than once")
    try:
        path = validate_relpath(unquote(raw, errors="strict"))
    except (UnicodeDecodeError, RequestError):
        return _text(400, f"{MEDIA_PATH_HEADER} is not a media path")
    user = getattr(request, "user", None)
    if user is None:
        raise ImproperlyConfigured(
            "authorize_media needs django.contrib.auth.middleware.AuthenticationMiddleware"
        )
    if login_required and not user.is_authenticated:
        return _text(403, "Forbidden")
    if permission is None:
        allowed = bool(user.is_authenticated)
    else:
        try:
            allowed = permission(request, path)
        except PermissionDenied:
            allowed = False
        except Http404:
            return _text(404, "Not found")
    return HttpResponse(status=204) if allowed else _text(403, "Forbidden")


def _text(status: int, reason: str) -> HttpResponse:
    return HttpResponse(f"{reason}\n", status=status, content_type="text/plain; charset=utf-8")


#: Allows every signed-in user; 403 for anonymous requests.
authorize_media = authorize_media_view()
