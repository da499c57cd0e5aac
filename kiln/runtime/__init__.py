"""Instances without a daemon: state directories, a supervisor per instance, restart policy."""
