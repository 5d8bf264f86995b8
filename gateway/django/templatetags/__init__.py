"""Template tag libraries of ``gateway.django``: ``{% load media_gateway %}``."""
