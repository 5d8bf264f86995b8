"""Pages linking to a document's files, and the delegate endpoint deciding who gets them.

A module of its own: ``tests.djangoproject.views`` is imported by tests before Django
is set up, and models can only be imported after.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render

from gateway.django.views import authorize_media_view

from .models import Document


def document(request: HttpRequest, pk: int) -> HttpResponse:
    """Links made with ``{% signed_media_url %}``."""
    return render(request, "document.html", {"doc": get_object_or_404(Document, pk=pk)})


def document_url(request: HttpRequest, pk: int) -> HttpResponse:
    """Links made with ``{{ doc.file.url }}``, as templates written for any storage are."""
    return render(request, "document_url.html", {"doc": get_object_or_404(Document, pk=pk)})


def owns_document(request: HttpRequest, path: str) -> bool:
    """The delegate's rule: a signed-in user may have the files of their own documents."""
    return bool(Document.objects.filter(owner=request.user, file=path).exists())


media_auth = authorize_media_view(owns_document)


def in_own_folder(request: HttpRequest, path: str) -> bool:
    """A rule that tests a prefix: ``users/<id>/`` belongs to user ``<id>``. A forged
    X-Media-Path once got past such a rule under WSGI (issue 17)."""
    return path.startswith(f"users/{request.user.pk}/")


media_auth_folder = authorize_media_view(in_own_folder)
