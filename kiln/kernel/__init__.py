"""The guest kernel: Debian's linux-source, configured from fragments, cached by hash."""
