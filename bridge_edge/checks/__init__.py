"""Checks with known answers that guard every bundle (the rhythm-not-shape suite)."""
