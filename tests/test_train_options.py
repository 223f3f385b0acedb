"""cli/train_options.py: what a --resume copies weights into, and which runs --resume=latest continues."""

import types

import pytest
from helpers import invoke, make_dataset, parse_config, released_networks, tiny_args, write_tiny_snapshot

from cli import train_options

#----------------------------------------------------------------------------
# Fine-tuning: one warning per construction option that differs from the pickle, with the flag that matches.

@pytest.fixture(scope='module')
def ffhq_data(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp('data') / 'FFHQ_512', num_images=1, resolution=512)

def ffhq_config(outdir, data, *extra):
    return parse_config([f'--outdir={outdir}', '--cfg=ffhq', f'--data={data}', '--gpus=1', '--batch=4',
                         '--gamma=1', '--dry-run', *extra])[0]

def test_fine_tuning_ffhq512_128_names_the_missing_flags(ffhq_data, tmp_path):
    lines = train_options.describe_resume_differences(ffhq_config(tmp_path, ffhq_data), released_networks('ffhq', 128))
    assert lines == [
        'pose conditioning of G: this run uses false, the pickle has true (--gen_pose_cond=True matches it)',
        'neural rendering resolution: this run uses 64, the pickle has 128 '
        '(--neural_rendering_resolution_initial=128 matches it)']
    # The recipe of docs/training.md builds the same networks: nothing to report.
    recipe = ffhq_config(tmp_path, ffhq_data, '--gen_pose_cond=True', '--neural_rendering_resolution_initial=128')
    assert train_options.describe_resume_differences(recipe, released_networks('ffhq', 128)) == []

def test_fine_tuning_reports_sizes_and_modules(ffhq_data, tmp_path):
    c = ffhq_config(tmp_path, ffhq_data, '--gen_pose_cond=True', '--neural_rendering_resolution_initial=128',
                    '--map-depth=4', '--cbase=16384', '--cmax=256', '--c-scale=2',
                    '--sr-module=training.superresolution.SuperresolutionHybrid4X')
    pickle = released_networks('ffhq', 128)
    pickle['G_ema'].c_dim = 16
    lines = train_options.describe_resume_differences(c, pickle)
    assert [line.split(':')[0] for line in lines] == [
        'super-resolution module', 'camera label size c_dim', 'G mapping layers', 'G channel_base', 'G channel_max',
        'D channel_base', 'D channel_max', 'rendering option c_scale']
    assert lines[0].endswith('(--sr-module=training.superresolution.SuperresolutionHybrid8XDC matches it)')
    assert lines[1] == ('camera label size c_dim: this run uses 25, the pickle has 16 (no flag changes it: it '
                        'follows the dataset labels)')
    assert lines[2].endswith('(--map-depth=2 matches it)') and lines[3].endswith('(--cbase=32768 matches it)')
    assert lines[7] == 'rendering option c_scale: this run uses 2.0, the pickle has 1.0 (--c-scale=1 matches it)'

def test_fine_tuning_the_released_cars_and_cats(tmp_path):
    cars = make_dataset(tmp_path / 'cars_128', num_images=1, resolution=128)
    c = parse_config([f'--outdir={tmp_path}', '--cfg=shapenet', f'--data={cars}', '--gpus=1', '--batch=4',
                      '--gamma=0.3', '--neural_rendering_resolution_initial=64', '--dry-run'])[0]
    assert train_options.describe_resume_differences(c, released_networks('shapenet', 64)) == []
    cats = make_dataset(tmp_path / 'afhq', num_images=1, resolution=512)
    c = parse_config([f'--outdir={tmp_path}', '--cfg=afhq', f'--data={cats}', '--gpus=1', '--batch=4', '--gamma=5',
                      '--aug=ada', '--gen_pose_cond=True', '--gpc_reg_prob=0.8',
                      '--neural_rendering_resolution_initial=128', '--dry-run'])[0]
    assert train_options.describe_resume_differences(c, released_networks('afhq', 128)) == []

#----------------------------------------------------------------------------
# --resume=latest: the same configuration and dataset whatever --gpus and --batch.

def test_run_family_ignores_only_gpus_and_batch(ffhq_data, tmp_path):
    opts = dict(cfg='ffhq', gpus=8, batch=32, gamma=1.0, desc='a.b')
    family = train_options.run_family(types.SimpleNamespace(**opts), 'FFHQ_512')
    assert family.fullmatch('ffhq-FFHQ_512-gpus8-batch32-gamma1-a.b')
    assert family.fullmatch('ffhq-FFHQ_512-gpus4-batch16-gamma1-a.b').groupdict() == dict(gpus='4', batch='16')
    for other in ['ffhq-FFHQ_512-gpus4-batch16-gamma1-axb', 'ffhq-FFHQ_512-gpus4-batch16-gamma2-a.b',
                  'afhq-FFHQ_512-gpus4-batch16-gamma1-a.b', 'ffhq-FFHQ_256-gpus4-batch16-gamma1-a.b',
                  'ffhq-FFHQ_512-gpus4-batch16-gamma1']:
        assert family.fullmatch(other) is None, other

def test_dry_run_reports_differences_and_unreadable_pickles(tmp_path):
    data = make_dataset(tmp_path / 'cars_128', num_images=2)
    pkl = write_tiny_snapshot(str(tmp_path / 'tiny.pkl'))
    result = invoke(tiny_args(tmp_path / 'runs', data, f'--resume={pkl}', '--dry-run'))
    assert result.exit_code == 0, result.output
    prefix = f'Warning: --resume={pkl}: '
    warnings = [line[len(prefix):] for line in result.output.splitlines() if line.startswith(prefix)]
    assert len(warnings) == 12
    assert warnings[0] == ('pose conditioning of G: this run uses false, the pickle has true '
                           '(--gen_pose_cond=True matches it)')
    assert warnings[1] == 'G channel_max: this run uses 32, the pickle has 16 (--cmax=16 matches it)'
    assert 'rendering option white_back: this run uses true, the pickle has false (--white-back=False matches it)' in \
        warnings
    assert not (tmp_path / 'runs').exists()
    broken = tmp_path / 'broken.pkl'
    broken.write_bytes(b'not a pickle')
    result = invoke(tiny_args(tmp_path / 'runs', data, f'--resume={broken}', '--dry-run'))
    assert result.exit_code == 0 and f'Warning: --resume: {broken}: ' in result.output
    assert '(a real run stops here)' in result.output
    result = invoke(tiny_args(tmp_path / 'runs', data, f'--resume={broken}'))
    assert result.exit_code == 1 and not (tmp_path / 'runs').exists()
