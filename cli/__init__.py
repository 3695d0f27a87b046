"""The command line: cellbench's composition root (one module per command group)."""
