"""Measurement from the CT: coronary tree, centerlines, lumen, stenosis, stent, calcium, risk."""
