import functools
import os
import re
import subprocess
import sys

import click
import pytest
import script_commands
import torch
from click.testing import CliRunner
from helpers import REPO_ROOT

import cli
import dnnlib


def test_parsers():
    assert cli.parse_range('0,1,4-6') == [0, 1, 4, 5, 6]
    assert cli.parse_tuple('4x2') == (4, 2) and cli.parse_tuple('4,2') == (4, 2)
    assert cli.parse_comma_separated_list('fid50k_full,kid50k') == ['fid50k_full', 'kid50k']
    assert cli.parse_comma_separated_list('none') == []
    with pytest.raises(ValueError, match='"-1" is neither an integer nor a range'):
        cli.parse_range('-1')
    with pytest.raises(ValueError, match='"4x" is not a pair'):
        cli.parse_tuple('4x')


@click.command()
@click.option('--fail', type=click.Choice(['none', 'deep', 'usage', 'user']), default='none')
@click.option('--seeds', type=cli.SEED_RANGE, default='0')
@cli.one_line_errors
def _tool(fail, seeds):
    if fail == 'deep':
        raise OSError('data/x.zip: not a zip\n archive')
    if fail == 'usage':
        raise click.ClickException('--seeds: empty')
    if fail == 'user':
        raise dnnlib.util.UserError('--network: x.pkl: not a network snapshot')
    click.echo(f'ok {seeds}')


def test_one_line_errors(monkeypatch):
    monkeypatch.delenv(cli.DEBUG_ENV, raising=False)
    result = CliRunner().invoke(_tool, ['--seeds=1-2'])
    assert result.exit_code == 0 and result.output == 'ok [1, 2]\n'
    result = CliRunner().invoke(_tool, ['--fail=deep'])
    assert result.exit_code == 1
    assert result.output == f'Error: data/x.zip: not a zip archive (OSError; set {cli.DEBUG_ENV}=1 for the traceback)\n'
    result = CliRunner().invoke(_tool, ['--fail=usage'])
    assert result.exit_code == 1 and result.output == 'Error: --seeds: empty\n'
    result = CliRunner().invoke(_tool, ['--fail=user'])
    assert result.exit_code == 1 and result.output == 'Error: --network: x.pkl: not a network snapshot\n'
    result = CliRunner().invoke(_tool, ['--seeds=x'])
    assert result.exit_code == 2 and '"x" is neither an integer nor a range' in result.output
    monkeypatch.setenv(cli.DEBUG_ENV, '1')
    result = CliRunner().invoke(_tool, ['--fail=deep'])
    assert result.exit_code == 1 and isinstance(result.exception, OSError)


def test_seed_ranges_must_be_non_empty_numpy_seeds():
    assert cli.parse_seeds('3-3,4294967295') == [3, 4294967295]
    with pytest.raises(ValueError, match=r'^"5-2" is an empty range \(A-B needs A <= B\)$'):
        cli.parse_range('5-2')
    with pytest.raises(ValueError, match='^"" is neither'):
        cli.parse_range('')
    with pytest.raises(ValueError, match='^seed 4294967296 is larger than 4294967295$'):
        cli.parse_seeds('4294967290-4294967296')


def test_positive_pair_and_finite_float():
    @click.command()
    @click.option('--grid', type=cli.POSITIVE_PAIR, default=(1, 1))
    @click.option('--fov', type=cli.FiniteFloat(min=0, max=180, min_open=True), default=18)
    def tool(grid, fov):
        click.echo(f'{grid} {fov!r}')
    assert CliRunner().invoke(tool, ['--grid=2x3', '--fov=1e1']).output == '(2, 3) 10.0\n'
    for args, message in [(['--grid=0x3'], '"0x3": both numbers must be at least 1'),
                          (['--fov=nan'], "'nan' is not a finite number"),
                          (['--fov=-inf'], "'-inf' is not a finite number"),
                          (['--fov=0'], '0.0 is not in the range 0<x<=180')]:
        result = CliRunner().invoke(tool, args)
        assert result.exit_code == 2 and message in result.output


def test_check_output_dir_creates_nothing(tmp_path):
    (tmp_path / 'file').write_bytes(b'x')
    (tmp_path / 'dir' / 'taken.png').mkdir(parents=True)
    cli.check_output_dir(str(tmp_path / 'dir'), file_names=['free.png'])
    cli.check_output_dir(str(tmp_path / 'new' / 'deeper'))
    cases = [(str(tmp_path / 'file'), '--outdir', (), 'exists and is not a folder'),
             (str(tmp_path / 'file' / 'a' / 'b'), '--outdir', (), f'{tmp_path / "file"} is not a folder, so no folder'),
             (str(tmp_path / 'dir'), '--out', ['free.png', 'taken.png'], 'taken.png is a folder'),
             (' ', '--outdir', (), '--outdir: empty path')]
    for path, flag, names, message in cases:
        with pytest.raises(click.ClickException, match=re.escape(message)) as info:
            cli.check_output_dir(path, flag=flag, file_names=names)
        assert info.value.message.startswith(flag)
    assert sorted(os.listdir(tmp_path)) == ['dir', 'file'] and os.listdir(tmp_path / 'dir') == ['taken.png']


def test_parse_device():
    assert cli.parse_device('cpu') == torch.device('cpu')
    assert cli.parse_device(None) == torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    with pytest.raises(ValueError, match='^"tpu" is not a torch device'):
        cli.parse_device('tpu')
    with pytest.raises(ValueError, match='only cpu and cuda'):
        cli.parse_device('meta')
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match='CUDA is not available'):
            cli.parse_device('cuda:0')
# ----------------------------------------------------------------------------
# `~` in path options: the shell expands it only at the start of a word, not after `--flag=`.

TILDE_OPTIONS = {
    'train.py': ['--outdir', '--data', '--resume', '--cfg'],
    'gen_samples.py': ['--network', '--outdir'],
    'gen_videos.py': ['--network', '--outdir'],
    'calc_metrics.py': ['--network', '--data'],
    'dataset_tool.py': ['--source', '--dest', '--cfg'],
    'legacy.py': ['--source', '--dest'],
    'projector.py': ['--network', '--target', '--camera', '--outdir'],
    'visualizer.py': ['--network', '--browse-dir', '--capture-dir', 'PKLS'],
    'shape_utils.py': ['INPUT_MRC_PATH'],
    'dataset_preprocessing/procedural/make_procedural_dataset.py': ['--outdir'],
    'dataset_preprocessing/convert_cameras.py': ['--source', '--dest', '--images'],
    'benchmarks/bench_training.py': ['--data', '--out'],
    'scripts/demo.py': ['--outdir'],
}
NOT_PATHS = {('train.py', '--desc'), ('train.py', '--sr-module'), ('visualizer.py', '--host'), ('visualizer.py', '--token'),
             ('benchmarks/bench_training.py', 'TRAIN_ARGS')}


def _flag(param):
    return param.opts[0] if isinstance(param, click.Option) else param.name.upper()


@pytest.mark.parametrize('script', sorted(TILDE_OPTIONS))
def test_path_options_expand_tilde(script, tmp_path, monkeypatch):
    monkeypatch.setenv('HOME', str(tmp_path))
    command = script_commands.load_entry(os.path.join(REPO_ROOT, script))
    params = {_flag(param): param for param in command.params}
    args = []
    for flag in TILDE_OPTIONS[script]:
        value = f'~/{flag.strip("-")}/in.json'
        args += [value] if flag.isupper() else [f'{flag}={value}']
    ctx = script_commands.parse_click(command, args, require=False)
    for flag in TILDE_OPTIONS[script]:
        value = ctx.params[params[flag].name]
        value = value[0] if isinstance(value, tuple) else value
        assert value == os.path.join(str(tmp_path), flag.strip('-'), 'in.json'), flag
    # Every other free-text option is known not to be a path, so a new path option cannot miss the expansion.
    for flag, param in params.items():
        if isinstance(param.type, (click.types.StringParamType, click.Path)):
            assert (script, flag) in NOT_PATHS, f'{script} {flag}: a plain string option; use cli.PATH'


def test_expand_path_keeps_urls_and_names():
    for value in ['https://host/~user/x.pkl', 'latest', 'ffhq', 'a/~b', None]:
        assert cli.expand_path(value) == value


def test_tilde_paths_in_subprocesses(tmp_path):
    env = dict(os.environ, HOME=str(tmp_path))
    run = functools.partial(subprocess.run, capture_output=True, text=True, env=env, cwd=REPO_ROOT)
    result = run([sys.executable, 'dataset_preprocessing/procedural/make_procedural_dataset.py', '--outdir=~/toys',
                  '--count=2', '--res=16'])
    assert result.returncode == 0, result.stderr
    assert (tmp_path / 'toys' / 'dataset.json').is_file() and not os.path.exists(os.path.join(REPO_ROOT, '~'))
    result = run([sys.executable, 'dataset_tool.py', '--source=~/toys', '--dest=~/datasets/toys.zip'])
    assert result.returncode == 0, result.stderr
    assert (tmp_path / 'datasets' / 'toys.zip').is_file()


ARGPARSE_TILDE_OPTIONS = {
    'ffhq/validate_ffhq.py': ['--dataset_json'], 'ffhq/download_ffhq.py': ['--metadata'],
    'ffhq/crop_images.py': ['--indir', '--outdir'], 'ffhq/3dface2idr_mat.py': ['--in_root', '--out_path'],
    'ffhq/batch_mtcnn.py': ['--in_root'], 'ffhq/align_ffhq.py': ['--source', '--dest'],
    'ffhq/preprocess_face_cameras.py': ['--source', '--dest'], 'mirror_dataset.py': ['--source', '--dest'],
    'rebalance_ffhq/rebalance_ffhq_dataset.py': ['inzip', 'outzip', '--replicas'],
    'afhq/preprocess_afhq_cameras.py': ['--source', '--dest'], 'afhq/runme.py': ['inzip', 'outzip', '--labels'],
    'shapenet_cars/run_me.py': ['--source', '--dest'], 'shapenet_cars/preprocess_shapenet_cameras.py': ['--source'],
}


@pytest.mark.parametrize('script', sorted(ARGPARSE_TILDE_OPTIONS))
def test_preprocessing_path_options_expand_tilde(script, tmp_path, monkeypatch):
    monkeypatch.setenv('HOME', str(tmp_path))
    main = script_commands.load_entry(os.path.join(REPO_ROOT, 'dataset_preprocessing', script))
    names = ARGPARSE_TILDE_OPTIONS[script]
    args = [f'{name}=~/{name.strip("-")}' if name.startswith('-') else f'~/{name}' for name in names]
    parsed = script_commands.parse_argparse(main, args)
    for name in names:
        assert getattr(parsed, name.strip('-')) == os.path.join(str(tmp_path), name.strip('-')), name
