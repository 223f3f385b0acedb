"""Load a command-line script's click command (or argparse parser) without running it."""

import argparse
import ast
import copy
import importlib.util
import os
import sys

import click

_MODULES = {}


def load_script(path: str):
    """Import the script at `path` under a private module name (once per path)."""
    path = os.path.abspath(path)
    if path not in _MODULES:
        name = '_script_' + os.path.relpath(path, '/').replace(os.sep, '_').replace('.', '_').replace('-', '_')
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        script_dir = os.path.dirname(path)
        sys.path.insert(0, script_dir)
        try:
            spec.loader.exec_module(module)
        finally:
            sys.path.remove(script_dir)
        _MODULES[path] = module
    return _MODULES[path]


def main_name(path: str) -> str:
    """Name of the function that the script's `if __name__ == '__main__':` block calls."""
    tree = ast.parse(open(path, encoding='utf-8').read(), filename=path)
    for node in tree.body:
        if isinstance(node, ast.If) and '__main__' in ast.unparse(node.test):
            for sub in ast.walk(node):
                if isinstance(sub, ast.Call) and isinstance(sub.func, ast.Name):
                    return sub.func.id
    raise LookupError(f'{path}: no `if __name__ == "__main__":` block calling a function')


def load_entry(path: str):
    """The script's entry point: a click.Command, or a plain `main(argv)` that builds an argparse parser."""
    return getattr(load_script(path), main_name(path))


class _Parsed(Exception):
    def __init__(self, namespace):
        super().__init__('parsed')
        self.namespace = namespace


class ArgparseError(Exception):
    pass


def parse_argparse(main, argv: list) -> argparse.Namespace:
    """Run `main(argv)` only up to its parser: the parsed namespace, or ArgparseError with argparse's message."""
    real_parse = argparse.ArgumentParser.parse_args

    def parse_and_stop(parser, args=None, namespace=None):
        raise _Parsed(real_parse(parser, args, namespace))

    def error(parser, message):
        raise ArgparseError(message)

    saved = argparse.ArgumentParser.parse_args, argparse.ArgumentParser.error
    argparse.ArgumentParser.parse_args, argparse.ArgumentParser.error = parse_and_stop, error
    try:
        main(argv)
    except _Parsed as parsed:
        return parsed.namespace
    finally:
        argparse.ArgumentParser.parse_args, argparse.ArgumentParser.error = saved
    raise ArgparseError('main() returned without parsing its arguments')


def is_click(entry) -> bool:
    return isinstance(entry, click.Command)


def parse_click(command: click.Command, args: list, require: bool = True) -> click.Context:
    """click's own parsing and value conversion of `args`, without invoking the command.

    require=False skips the check for missing required parameters (for commands shown with `...`).
    """
    if not require:
        params = []
        for param in command.params:
            param = copy.copy(param)
            param.required = False
            params.append(param)
        command = click.Command(command.name, params=params, context_settings=command.context_settings)
    return command.make_context(command.name or 'tool', list(args), resilient_parsing=False)
