"""Tests of core/training/."""
