import click
import pytest
from click.testing import CliRunner

from training import cli_utils


def test_parsers():
    assert cli_utils.parse_range('0,1,4-6') == [0, 1, 4, 5, 6]
    assert cli_utils.parse_tuple('4x2') == (4, 2) and cli_utils.parse_tuple('4,2') == (4, 2)
    assert cli_utils.parse_comma_separated_list('fid50k_full,kid50k') == ['fid50k_full', 'kid50k']
    assert cli_utils.parse_comma_separated_list('none') == []
    with pytest.raises(ValueError, match='"-1" is neither an integer nor a range'):
        cli_utils.parse_range('-1')
    with pytest.raises(ValueError, match='"4x" is not a pair'):
        cli_utils.parse_tuple('4x')


@click.command()
@click.option('--fail', type=click.Choice(['none', 'deep', 'usage']), default='none')
@click.option('--seeds', type=cli_utils.SEED_RANGE, default='0')
@cli_utils.one_line_errors
def _tool(fail, seeds):
    if fail == 'deep':
        raise OSError('data/x.zip: not a zip\n archive')
    if fail == 'usage':
        raise click.ClickException('--seeds: empty')
    click.echo(f'ok {seeds}')


def test_one_line_errors(monkeypatch):
    monkeypatch.delenv(cli_utils.DEBUG_ENV, raising=False)
    result = CliRunner().invoke(_tool, ['--seeds=1-2'])
    assert result.exit_code == 0 and result.output == 'ok [1, 2]\n'
    result = CliRunner().invoke(_tool, ['--fail=deep'])
    assert result.exit_code == 1
    assert result.output == f'Error: data/x.zip: not a zip archive (OSError; set {cli_utils.DEBUG_ENV}=1 for the traceback)\n'
    result = CliRunner().invoke(_tool, ['--fail=usage'])
    assert result.exit_code == 1 and result.output == 'Error: --seeds: empty\n'
    result = CliRunner().invoke(_tool, ['--seeds=x'])
    assert result.exit_code == 2 and '"x" is neither an integer nor a range' in result.output
    monkeypatch.setenv(cli_utils.DEBUG_ENV, '1')
    result = CliRunner().invoke(_tool, ['--fail=deep'])
    assert result.exit_code == 1 and isinstance(result.exception, OSError)
