"""Masks from a label map by anatomy name, mask files a viewer opens, TotalSegmentator."""
