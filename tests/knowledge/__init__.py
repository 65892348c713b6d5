"""Tests of core/knowledge/."""
