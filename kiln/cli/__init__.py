"""The command-line interface: one module per verb; parse, call the library, render."""
