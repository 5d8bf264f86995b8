"""Tests of gateway/serving/."""
