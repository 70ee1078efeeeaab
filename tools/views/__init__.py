"""What is shown: slices with windows and mask overlays, the straightened vessel view."""
