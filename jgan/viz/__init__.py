"""Image grids and self-contained HTML reports."""
