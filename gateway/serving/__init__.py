"""The request path: the ASGI middleware and what it calls to answer a media request.

Imports the core (``gateway/*.py``) and nothing of ``gateway.migrate``.
"""
