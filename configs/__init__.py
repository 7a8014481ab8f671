"""Python config files for `jgan train` (each with a tiny CPU variant)."""
