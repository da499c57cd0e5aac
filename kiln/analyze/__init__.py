"""Analysis: work out what an app needs (modules, ELF libraries) without running it."""
