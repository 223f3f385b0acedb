"""What the command-line tools share: value parsers, click parameter types, and the one-line error boundary."""

import functools
import os
import re

import click

DEBUG_ENV = 'EG3D_DEBUG'  # Set to 1 to see the full traceback of an error that a tool reports in one line.

# ----------------------------------------------------------------------------
# Parsers: plain functions that raise ValueError with a message naming the value.


def parse_range(value) -> list:
    """'0,1,4-6' -> [0, 1, 4, 5, 6]."""
    if isinstance(value, list):
        return value
    result = []
    for item in str(value).split(','):
        item = item.strip()
        match = re.fullmatch(r'(\d+)-(\d+)', item)
        if match:
            result.extend(range(int(match.group(1)), int(match.group(2)) + 1))
        elif re.fullmatch(r'\d+', item):
            result.append(int(item))
        else:
            raise ValueError(f'"{item}" is neither an integer nor a range A-B of non-negative integers')
    return result


def parse_tuple(value) -> tuple:
    """'4x2' or '4,2' -> (4, 2)."""
    if isinstance(value, tuple):
        return value
    match = re.fullmatch(r'\s*(\d+)\s*[x,]\s*(\d+)\s*', str(value))
    if not match:
        raise ValueError(f'"{value}" is not a pair MxN or M,N of non-negative integers')
    return int(match.group(1)), int(match.group(2))


def parse_comma_separated_list(value) -> list:
    """'a,b' -> ['a', 'b']; None, '' and 'none' -> []."""
    if isinstance(value, list):
        return value
    if value is None or value == '' or str(value).lower() == 'none':
        return []
    return str(value).split(',')


def click_type(parser, name: str) -> click.ParamType:
    """A click parameter type that runs `parser` and turns its ValueError into a usage error."""
    class _ParserType(click.ParamType):
        def convert(self, value, param, ctx):
            try:
                return parser(value)
            except ValueError as err:
                self.fail(str(err), param, ctx)
    _ParserType.name = name
    return _ParserType()


SEED_RANGE = click_type(parse_range, 'range')
PAIR = click_type(parse_tuple, 'pair')

# ----------------------------------------------------------------------------
# Error boundary.


def one_line_errors(fn):
    """Decorate a click command's function: an unexpected exception ends the tool with one line and exit status 1.

    The line names the error type and message; with EG3D_DEBUG=1 the exception propagates with its traceback.
    """
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort, KeyboardInterrupt):
            raise
        except Exception as err:
            if os.environ.get(DEBUG_ENV, '') not in ('', '0'):
                raise
            message = ' '.join(str(err).split()) or type(err).__name__
            raise click.ClickException(f'{message} ({type(err).__name__}; set {DEBUG_ENV}=1 for the traceback)') \
                from err
    return wrapper


def trust_embedded_code_option(fn):
    """The `--trust-embedded-code` flag of every tool that loads a network pickle."""
    return click.option('--trust-embedded-code', is_flag=True, default=False,
                        help='Execute the Python source embedded in the network pickle (only for files you trust, '
                             'e.g. a fork whose classes this repository does not have)')(fn)
