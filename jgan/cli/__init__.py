"""The `jgan` command line."""
