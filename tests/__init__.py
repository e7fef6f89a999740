"""Tests for fynlo-sync."""
