"""Tests of core/feedback/."""
