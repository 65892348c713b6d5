"""Tests of core/comparison/."""
