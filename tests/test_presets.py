"""training/presets.py: the rendering presets of --cfg and the camera sphere of the scripts."""

import pytest

from training import presets, rendering_config


def test_presets_hold_the_guide_options_in_order():
    for name, options in presets.RENDERING_PRESETS.items():
        keys = [key for key in rendering_config.OPTION_KEYS if key in options]
        assert list(options) == keys, name # training_options.json shows them in this order.
        assert set(rendering_config.REQUIRED_KEYS) <= set(options), name
    assert presets.RENDERING_PRESETS['shapenet']['white_back'] is True
    assert 'white_back' not in presets.RENDERING_PRESETS['ffhq']


def test_rendering_preset_is_a_private_copy():
    options = presets.rendering_preset('ffhq')
    options['avg_camera_pivot'][2] = 99
    options['ray_start'] = 'auto'
    assert presets.RENDERING_PRESETS['ffhq']['avg_camera_pivot'] == [0, 0, 0.2]
    assert presets.RENDERING_PRESETS['ffhq']['ray_start'] == 2.25
    with pytest.raises(KeyError, match='unknown preset "cars"'):
        presets.rendering_preset('cars')


def test_camera_orbit():
    assert presets.camera_orbit(presets.rendering_preset('afhq')) == ([0.0, 0.0, -0.06], 2.7)
    assert presets.camera_orbit(dict(avg_camera_radius=1, avg_camera_pivot=(1, 2, 3))) == ([1.0, 2.0, 3.0], 1.0)
    assert presets.camera_orbit({}) == ([0.0, 0.0, 0.0], presets.DEFAULT_CAMERA_RADIUS)
