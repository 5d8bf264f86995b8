from __future__ import annotations

from django.urls import path

from . import views

urlpatterns = [
    path("", views.index, name="index"),
    path("go/", views.go, name="go"),
    path("cookie/", views.cookie, name="cookie"),
    path("form/", views.form, name="form"),
    path("stream/", views.stream, name="stream"),
    path("page-with-media/", views.page_with_media, name="page-with-media"),
    path("teapot/", views.teapot, name="teapot"),
]
