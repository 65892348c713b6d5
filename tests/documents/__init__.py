"""Tests of core/documents/."""
