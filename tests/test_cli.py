import os
import re

import click
import pytest
import torch
from click.testing import CliRunner

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
