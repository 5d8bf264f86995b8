"""``{% load media_gateway %}``: gateway URLs in templates.

::

    <a href="{% signed_media_url doc.file %}">view</a>
    <a href="{% signed_media_url doc.file.name download=True expires=600 %}">download</a>
    {% signed_media_url doc.file as url %}
"""

from __future__ import annotations

from django import template

from .. import media_url

register = template.Library()


def signed_media_url(file: object, download: bool = False, expires: int | None = None) -> str:
    """The gateway URL of a storage name or a ``FieldFile``; "" when there is no file.

    A ``FieldFile`` asks its storage, so a gateway storage's ``media_prefix``
    (``PublicMediaStorage``) is part of the URL; any other value is a name under
    ``MEDIA_URL``. ``download=True`` makes the file an attachment, ``expires`` sets the
    lifetime in seconds; neither applies under a public prefix.
    """
    if file is None or file == "":
        return ""
    name = file if isinstance(file, str) else getattr(file, "name", None)
    if name is not None and not isinstance(name, str):
        name = None
    if name is None:
        # A model that holds a file (Wagtail's Image, say) would otherwise be signed by
        # its str(): a link to a file named after its title.
        hint = " (use its .file)" if hasattr(file, "file") else ""
        raise TypeError(
            f"signed_media_url takes a file field's value (doc.file) or a storage name,"
            f" not {type(file).__name__}{hint}"
        )
    if not name:
        # An empty FileField renders an empty href rather than a 500 for the page.
        return ""
    gateway_url = getattr(getattr(file, "storage", None), "gateway_url", None)
    if gateway_url is not None:
        return str(gateway_url(name, download=download, expires_in=expires))
    return media_url(str(name), download=download, expires_in=expires)


register.simple_tag(signed_media_url)
