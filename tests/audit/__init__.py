"""Tests of core/audit/."""
