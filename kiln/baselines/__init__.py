"""Baselines kiln is compared with, built from Debian's packages (never by hand)."""
