"""What every package shares: the anatomy registry, settings, errors, the case layout, the answer schema."""
