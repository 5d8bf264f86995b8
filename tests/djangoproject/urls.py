from __future__ import annotations

from django.urls import path

from . import views
from .docs import views as docs_views

urlpatterns = [
    path("", views.index, name="index"),
    path("go/", views.go, name="go"),
    path("cookie/", views.cookie, name="cookie"),
    path("form/", views.form, name="form"),
    path("stream/", views.stream, name="stream"),
    path("page-with-media/", views.page_with_media, name="page-with-media"),
    path("teapot/", views.teapot, name="teapot"),
    path("docs/<int:pk>/", docs_views.document, name="document"),
    path("docs/<int:pk>/url/", docs_views.document_url, name="document-url"),
    path("media-auth/", docs_views.media_auth, name="media-auth"),
    path("media-auth-folder/", docs_views.media_auth_folder, name="media-auth-folder"),
]
