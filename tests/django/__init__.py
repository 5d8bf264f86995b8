"""Tests of gateway/django/."""
