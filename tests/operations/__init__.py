"""Tests of core/operations/."""
