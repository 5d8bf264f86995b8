"""The batch copier: ``media-gateway upload | verify | pull``, resumable and verifiable.

Imports the core (``gateway/*.py``) and nothing of ``gateway.serving``.
"""
