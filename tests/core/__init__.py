"""Tests of the sync core."""
