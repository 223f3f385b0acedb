"""The import rules of docs/architecture.md, checked by reading every module's imports (ast), including the ones
inside functions."""

import ast
import os
import sys

import pytest
from helpers import REPO_ROOT

# What each library package may import from the project (besides itself). Listed bottom-up: the order is a layering,
# so a package imports only packages listed before it, and no cycle can form between packages.
LIBRARY = {
    'dnnlib': set(),
    'torch_utils': {'dnnlib'},
    'metrics': {'dnnlib', 'torch_utils'},
    'training': {'dnnlib', 'torch_utils', 'metrics'},
    'inference': {'dnnlib', 'torch_utils', 'metrics', 'training'},
    'viz': {'dnnlib', 'torch_utils', 'training', 'inference'},
    'cli': {'dnnlib', 'torch_utils', 'metrics', 'training', 'inference'},
}
# Top-level modules of the original API that user code imports (legacy.py is also a command): the library and cli,
# and nothing imports them except scripts and tests.
API_MODULES = {'camera_utils', 'legacy'}
# Scripts may import the library, cli and the API modules, but no other script, except these.
SCRIPT_EXCEPTIONS = {
    'benchmarks': {'train', 'benchmarks'},  # train.config_from_args; bench_modes uses bench_training and bench_generator.
}
SKIP_DIRS = {'.git', '.venv', 'tests', '__pycache__', 'node_modules'}


def _modules():
    """{dotted module name: path} of the repository's Python files (scripts by their path, e.g. benchmarks.bench_ops)."""
    found = {}
    for folder, dirs, files in os.walk(REPO_ROOT):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS and not d.startswith('.'))
        for name in files:
            if name.endswith('.py'):
                rel = os.path.relpath(os.path.join(folder, name), REPO_ROOT)[:-3].replace(os.sep, '.')
                found[rel[:-len('.__init__')] if rel.endswith('.__init__') else rel] = os.path.join(folder, name)
    return found


MODULES = _modules()


def _group(module):
    top = module.split('.')[0]
    if top in LIBRARY:
        return top
    if module in API_MODULES:
        return 'api'
    return 'script'


def _resolve(name, importer_dir_modules):
    """The project module an absolute import name refers to (longest known prefix), or None for other packages."""
    parts = name.split('.')
    while parts:
        candidate = '.'.join(parts)
        if candidate in MODULES:
            return candidate
        if candidate in importer_dir_modules:
            return importer_dir_modules[candidate]
        parts.pop()
    return None


def _imports(module):
    """Project modules that `module` imports (each import statement, wherever it is)."""
    path = MODULES[module]
    with open(path, encoding='utf-8') as f:
        tree = ast.parse(f.read(), filename=path)
    package = module if path.endswith('__init__.py') else module.rpartition('.')[0]
    # Scripts that put their own folder on sys.path import their neighbours by bare name.
    folder = module.rpartition('.')[0]
    neighbours = {m.rpartition('.')[2]: m for m in MODULES if folder and m.rpartition('.')[0] == folder}
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split('.')[:len(package.split('.')) - node.level + 1]
                prefix = '.'.join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module
            names = [f'{prefix}.{alias.name}' for alias in node.names]
        else:
            continue
        for name in names:
            target = _resolve(name, neighbours)
            if target is not None and target != module:
                found.add(target)
    return found


GRAPH = {module: _imports(module) for module in MODULES}


def _allowed(importer, target):
    source, dest = _group(importer), _group(target)
    if source in LIBRARY:
        return dest == source or dest in LIBRARY[source]
    if source == 'api':
        return dest in LIBRARY
    if dest in LIBRARY or dest == 'api':
        return True
    exceptions = SCRIPT_EXCEPTIONS.get(importer.split('.')[0], set())
    return target.split('.')[0] in exceptions or importer.rpartition('.')[0] == target.rpartition('.')[0] != ''


def test_every_import_follows_the_package_rules():
    broken = [f'{importer} imports {target}' for importer, targets in sorted(GRAPH.items())
              for target in sorted(targets) if not _allowed(importer, target)]
    assert broken == []


def test_no_import_cycles():
    # Tarjan's strongly connected components over the module graph.
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10 * len(GRAPH)))

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in GRAPH[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(GRAPH):
        if node not in index:
            visit(node)
    assert cycles == []


def test_only_scripts_and_cli_use_click():
    users = sorted(module for module, path in MODULES.items() if _group(module) in set(LIBRARY) - {'cli'}
                   and any(isinstance(node, (ast.Import, ast.ImportFrom))
                           and any((getattr(node, 'module', None) or alias.name).split('.')[0] == 'click'
                                   for alias in node.names)
                           for node in ast.walk(ast.parse(open(path, encoding='utf-8').read()))))
    assert users == []


@pytest.mark.parametrize('importer, target, allowed', [
    ('metrics.metric_utils', 'training.image_grid', False),     # The training <-> metrics cycle this test prevents.
    ('training.image_grid', 'inference.generation', False),
    ('training.cameras', 'camera_utils', False),                 # A library module importing a top-level module.
    ('inference.generation', 'cli', False),
    ('projector', 'dataset_tool', False),                        # A script importing a script.
    ('camera_utils', 'training.cameras', True),
    ('benchmarks.bench_modes', 'train', True),
    ('gen_samples', 'cli', True),
])
def test_the_rules_themselves(importer, target, allowed):
    assert _allowed(importer, target) == allowed
