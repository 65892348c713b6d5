"""Tests of core/serving/."""
