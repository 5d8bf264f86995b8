"""Views covering what a gateway in front must pass through untouched."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

from django.conf import settings
from django.core.handlers.asgi import ASGIRequest
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from gateway import Settings, URLSigner

STREAM_CHUNKS = (b"first chunk\n", b"second chunk\n", b"third chunk\n")
COOKIES = {"flavour": "oatmeal", "size": "large"}
#: The file whose signed link ``/page-with-media/`` renders.
MEDIA_FILE = "documents/report.txt"


def index(request: HttpRequest) -> HttpResponse:
    return render(request, "index.html")


def go(request: HttpRequest) -> HttpResponseRedirect:
    return redirect("index")


def cookie(request: HttpRequest) -> HttpResponse:
    response = HttpResponse("cookies set\n", content_type="text/plain")
    for name, value in COOKIES.items():
        response.set_cookie(name, value, httponly=True, samesite="Lax")
    return response


@require_http_methods(["GET", "POST"])
def form(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        # text/plain, so the echo cannot inject markup.
        return HttpResponse(
            f"message: {request.POST.get('message', '')}", content_type="text/plain"
        )
    return render(request, "form.html")


def stream(request: HttpRequest) -> StreamingHttpResponse:
    # Django warns (and the tests turn warnings into errors) when a handler has to
    # adapt an iterator of the other kind, so give each handler its own kind.
    content = _async_chunks() if isinstance(request, ASGIRequest) else _sync_chunks()
    return StreamingHttpResponse(content, content_type="text/plain")


async def _async_chunks() -> AsyncIterator[bytes]:
    for chunk in STREAM_CHUNKS:
        yield chunk
        await asyncio.sleep(0)  # let each chunk go out on its own


def _sync_chunks() -> Iterator[bytes]:
    yield from STREAM_CHUNKS


def page_with_media(request: HttpRequest) -> HttpResponse:
    return render(
        request, "page_with_media.html", {"media_url": media_signer().sign_url(MEDIA_FILE)}
    )


def media_signer() -> URLSigner:
    """The signer a Django project builds from its settings to link to gateway media."""
    gateway_settings = Settings(
        secret_keys=(settings.GATEWAY_SECRET_KEY,), media_url=settings.MEDIA_URL
    )
    return URLSigner.from_settings(gateway_settings)


def teapot(request: HttpRequest) -> HttpResponse:
    return HttpResponse(
        "I'm a teapot\n", status=418, content_type="text/plain", headers={"X-Custom": "yes"}
    )
