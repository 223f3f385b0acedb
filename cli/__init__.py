"""The command-line layer that the scripts share: value parsers, click parameter types, the device choice,
output-folder checks, the trust flag and the one-line error boundary. Only scripts import this package; the
library modules raise ordinary exceptions (dnnlib.util.UserError for one-line messages) and know nothing of click."""

import functools
import math
import os
import re

import click

import dnnlib

DEBUG_ENV = 'EG3D_DEBUG'  # Set to 1 to see the full traceback of an error that a tool reports in one line.

# ----------------------------------------------------------------------------
# Parsers: plain functions that raise ValueError with a message naming the value.


def parse_range(value) -> list:
    """'0,1,4-6' -> [0, 1, 4, 5, 6]. A descending range such as '5-2' is an error, not an empty list."""
    if isinstance(value, list):
        return value
    result = []
    for item in str(value).split(','):
        item = item.strip()
        match = re.fullmatch(r'(\d+)-(\d+)', item)
        if match:
            first, last = int(match.group(1)), int(match.group(2))
            if first > last:
                raise ValueError(f'"{item}" is an empty range (A-B needs A <= B)')
            result.extend(range(first, last + 1))
        elif re.fullmatch(r'\d+', item):
            result.append(int(item))
        else:
            raise ValueError(f'"{item}" is neither an integer nor a range A-B of non-negative integers')
    return result


MAX_SEED = 2**32 - 1  # numpy.random.RandomState accepts seeds up to this.


def parse_seeds(value) -> list:
    """parse_range() for random seeds: every value must be a valid NumPy seed."""
    seeds = parse_range(value)
    too_large = [seed for seed in seeds if seed > MAX_SEED]
    if too_large:
        raise ValueError(f'seed {too_large[0]} is larger than {MAX_SEED}')
    return seeds


def parse_tuple(value, min_value: int = 0) -> tuple:
    """'4x2' or '4,2' -> (4, 2); both numbers at least `min_value`."""
    if isinstance(value, tuple):
        return value
    match = re.fullmatch(r'\s*(\d+)\s*[x,]\s*(\d+)\s*', str(value))
    if not match:
        raise ValueError(f'"{value}" is not a pair MxN or M,N of non-negative integers')
    pair = int(match.group(1)), int(match.group(2))
    if min(pair) < min_value:
        raise ValueError(f'"{value}": both numbers must be at least {min_value}')
    return pair


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


def expand_path(value):
    """'~/x' -> '<home>/x'. The shell leaves `~` alone after `--flag=`, so every path option expands it here;
    URLs, preset names and 'latest' pass unchanged."""
    return os.path.expanduser(value) if isinstance(value, str) else value


PATH = click_type(expand_path, 'path')
SEED_RANGE = click_type(parse_seeds, 'range')
PAIR = click_type(parse_tuple, 'pair')
POSITIVE_PAIR = click_type(functools.partial(parse_tuple, min_value=1), 'pair')


class FiniteFloat(click.FloatRange):
    """click.FloatRange that also rejects nan and inf (which pass any range comparison or bound)."""

    def convert(self, value, param, ctx):
        number = click.FLOAT.convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f'{value!r} is not a finite number', param, ctx)
        return super().convert(number, param, ctx)

# ----------------------------------------------------------------------------
# Device.


def parse_device(value):
    """'cpu', 'cuda', 'cuda:1', ... -> torch.device; None or '' picks CUDA when available.

    ValueError names the problem."""
    import torch  # Here, so that the tools that take no --device start without torch.
    if isinstance(value, torch.device):
        return value
    if value is None or str(value).strip() == '':
        return torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    try:
        device = torch.device(str(value).strip())
    except RuntimeError as err:
        raise ValueError(f'"{value}" is not a torch device ({" ".join(str(err).split())})') from err
    if device.type == 'cuda':
        if not torch.cuda.is_available():
            raise ValueError(f'"{value}": CUDA is not available on this machine')
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f'"{value}": only {torch.cuda.device_count()} CUDA device(s) are visible')
    elif device.type != 'cpu':
        raise ValueError(f'"{value}": only cpu and cuda devices are supported')
    return device


DEVICE = click_type(parse_device, 'device')

# ----------------------------------------------------------------------------
# Output locations, checked before anything is written.


def _first_existing(path: str) -> str:
    while not os.path.lexists(path):
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return path


def check_output_dir(path: str, flag: str = '--outdir', file_names=()) -> None:
    """Raise a one-line ClickException unless `path` is a writable folder or one that can be created there.

    Nothing is created. `file_names` are the files the tool will write into the folder: none may be a folder.
    """
    if not str(path).strip():
        raise click.ClickException(f'{flag}: empty path')
    full = os.path.abspath(path)
    existing = _first_existing(full)
    if not os.path.isdir(existing):
        problem = 'exists and is not a folder' if existing == full else \
            f'{existing} is not a folder, so no folder can be made below it'
        raise click.ClickException(f'{flag}={path}: {problem}')
    if not os.access(existing, os.W_OK | os.X_OK):
        raise click.ClickException(f'{flag}={path}: {existing} is not writable')
    for name in file_names:
        if os.path.isdir(os.path.join(full, name)):
            raise click.ClickException(f'{flag}={path}: {os.path.join(path, name)} is a folder; the output file '
                                       f'{name} cannot replace it')

# ----------------------------------------------------------------------------
# Error boundary.


def one_line_errors(fn):
    """Decorate a click command's function: an unexpected exception ends the tool with one line and exit status 1.

    A dnnlib.util.UserError prints its message as it is; for any other exception the line names the error type and
    message, and with EG3D_DEBUG=1 the exception propagates with its traceback.
    """
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort, KeyboardInterrupt):
            raise
        except dnnlib.util.UserError as err:
            raise click.ClickException(str(err)) from err
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
