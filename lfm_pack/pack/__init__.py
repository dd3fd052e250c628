"""pack stage."""
