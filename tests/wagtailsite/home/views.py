"""The page a visitor sees: every image at the rendition sizes asked for, by Wagtail."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from wagtail.images import get_image_model


def gallery(request: HttpRequest) -> HttpResponse:
    """``/?spec=width-10&spec=fill-8x8``: a new spec makes Wagtail open each original."""
    specs = request.GET.getlist("spec") or ["fill-8x8"]
    figures = [
        (image, [image.get_rendition(spec) for spec in specs])
        for image in get_image_model().objects.order_by("id")
    ]
    return render(request, "home/gallery.html", {"figures": figures})
