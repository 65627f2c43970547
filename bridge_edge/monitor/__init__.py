"""Bedside web monitor: server and static page."""
