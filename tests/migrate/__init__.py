"""Tests of gateway/migrate/."""
