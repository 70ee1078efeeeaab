"""Slices shown in radiological convention with coloured mask overlays."""

import numpy as np
import pytest

from cardiovlm.tools.views.render import best_slice, render, slice_of, window


def test_axial_view_puts_patient_left_on_the_image_right_and_anterior_at_the_top():
    volume = np.zeros((10, 8, 4))
    volume[9, 0, 2] = 1  # most left (high i), most anterior (low j)
    view = slice_of(volume, "axial", 2)
    assert view.shape == (8, 10) and view[0, 9] == 1


def test_coronal_view_puts_superior_at_the_top():
    volume = np.zeros((10, 8, 4))
    volume[0, 3, 3] = 1  # most superior slice
    view = slice_of(volume, "coronal", 3)
    assert view.shape == (4, 10) and view[0, 0] == 1


def test_window_maps_level_to_mid_grey_and_clips():
    grey = window(np.array([150.0, -1000.0, 3000.0]), "cardiac")
    assert grey[0] == 127 and grey[1] == 0 and grey[2] == 255


def test_overlay_colours_mask_and_keeps_the_rest_grey():
    hu = np.full((6, 6, 3), 150.0)
    mask = np.zeros((6, 6, 3), bool)
    mask[1:4, 1:4, 1] = True
    rgb = render(hu, "axial", 1, masks=[(mask, (255, 0, 0))])
    assert tuple(rgb[2, 2]) != tuple(rgb[5, 5])
    assert rgb[2, 2, 0] > rgb[2, 2, 1] and rgb[5, 5, 0] == rgb[5, 5, 1]
    assert best_slice(mask, "axial") == 1


def test_unknown_window_is_refused():
    with pytest.raises(ValueError, match="unknown window"):
        window(np.zeros(3), "brain")
