"""A small real Django project that tests run behind the gateway, under ASGI and WSGI."""
