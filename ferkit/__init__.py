"""Shared library of the FER platform."""
