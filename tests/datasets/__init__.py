"""Tests of core/datasets/."""
