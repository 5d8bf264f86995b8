from django.urls import path

from .home.views import gallery

urlpatterns = [path("", gallery)]
