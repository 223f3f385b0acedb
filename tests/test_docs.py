"""Every command the docs show parses: the script exists, every flag exists, every value converts.

The shell blocks of README.md and docs/*.md are read like a user would paste them (line continuations,
comments, `cd`, environment-variable prefixes, heredocs). Each `python <script>.py ...` (or `torchrun ...
<script>.py ...`) line goes through the script's own click command (`make_context`, nothing is run) or, for
the argparse scripts of dataset_preprocessing/, through its own parser. Placeholders (`<...>`, `$VAR`) and
files that only exist on the user's machine are replaced by values that parse. A command shown to demonstrate
a usage error ends with the comment `# expected error`: it must fail to parse.
"""

import dataclasses
import glob
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import urllib.request

import click
import pytest
import script_commands
from helpers import REPO_ROOT, running_viewer, write_detectors, write_stand_in_detector

SHELL_LANGUAGES = {'', 'bash', 'sh', 'shell', 'console', 'zsh'}
LAUNCHERS = re.compile(r'^(\S*/)?(python[0-9.]*|torchrun|srun)$')
ENV_ASSIGNMENT = re.compile(r'^[A-Za-z_][A-Za-z0-9_]*=')
PLACEHOLDER = 'PLACEHOLDER'
ANGLE_PLACEHOLDER = re.compile(r'(?<![<\w])<[A-Za-z][^<>\n]*>')
SHELL_VARIABLE = re.compile(r'\$\{?[A-Za-z_][A-Za-z0-9_]*\}?|\$\([^)]*\)')
ELLIPSIS = '...'
EXPECTED_ERROR = re.compile(r'#\s*expected error\b')


@dataclasses.dataclass
class DocCommand:
    location: str       # file:line of the command's first line
    cwd: str            # folder (relative to the repository) after the block's `cd` commands
    tokens: list        # the words from the launcher on, placeholders replaced by PLACEHOLDER
    expect_error: bool = False


def doc_files(root: str) -> list:
    return [os.path.join(root, 'README.md')] + sorted(glob.glob(os.path.join(root, 'docs', '*.md')))


def shell_blocks(path: str, languages=SHELL_LANGUAGES):
    """(first line number, lines) of every fenced block in one of `languages` (None: any)."""
    lines = open(path, encoding='utf-8').read().splitlines()
    fence = re.compile(r'^(\s*)(```+|~~~+)\s*([\w+-]*)')
    i = 0
    while i < len(lines):
        match = fence.match(lines[i])
        if not match:
            i += 1
            continue
        indent, marker, language = match.groups()
        body, start = [], i + 2
        i += 1
        while i < len(lines) and not lines[i].strip().startswith(marker):
            body.append(lines[i][len(indent):] if lines[i].startswith(indent) else lines[i].lstrip())
            i += 1
        i += 1
        if languages is None or language.lower() in languages:
            yield start, body


def inline_commands(path: str):
    """(line number, text) of inline code spans in the prose that run a command, e.g. `python x.py --a=1`.

    A span may continue on the next line of its paragraph; `[--flag=...]` (an optional flag) counts as given.
    """
    lines = open(path, encoding='utf-8').read().splitlines()
    fenced = set()
    for start, body in shell_blocks(path, languages=None):
        fenced.update(range(start - 1, start + len(body) + 1))
    paragraph = []
    for number, line in enumerate(lines + [''], start=1):
        if line.strip() and number not in fenced:
            paragraph.append((number, line))
            continue
        text = ' '.join(line for _, line in paragraph)
        starts = [sum(len(line) + 1 for _, line in paragraph[:i]) for i in range(len(paragraph))]
        for match in re.finditer(r'`([^`]+)`', text):
            words = match.group(1).split()
            first = next((w for w in words if not ENV_ASSIGNMENT.match(w)), '')
            if LAUNCHERS.match(first) and any(w.endswith('.py') for w in words):
                line_number = paragraph[max(i for i, s in enumerate(starts) if s <= match.start())][0]
                yield line_number, re.sub(r'\[(\s*-[^\]]*)\]', r'\1', match.group(1))
        paragraph = []


def logical_lines(start: int, body: list, keep_heredoc: bool = False):
    """(line number, text) with backslash continuations joined, `$ ` prompts removed, and heredoc bodies skipped
    (or, with keep_heredoc, appended to their command's text after newlines)."""
    i = 0
    while i < len(body):
        number, text = start + i, body[i]
        while text.rstrip().endswith('\\') and i + 1 < len(body):
            i += 1
            text = text.rstrip()[:-1] + ' ' + body[i].strip()
        i += 1
        heredoc = re.search(r"<<-?\s*['\"]?(\w+)['\"]?", text)
        if heredoc:
            first = i
            while i < len(body) and body[i].strip() != heredoc.group(1):
                i += 1
            i += 1
            if keep_heredoc:
                text = '\n'.join([text] + body[first:i])
        yield number, re.sub(r'^\s*\$ ', '', text)


def split_commands(text: str) -> list:
    """The simple commands of one logical line (split at ;, &&, ||, |), as word lists."""
    text = ANGLE_PLACEHOLDER.sub(PLACEHOLDER, text)
    text = SHELL_VARIABLE.sub(PLACEHOLDER, text)
    lexer = shlex.shlex(text, posix=True, punctuation_chars=';&|')
    lexer.whitespace_split = True
    lexer.commenters = '#'
    commands, words = [], []
    for word in lexer:
        if word and set(word) <= set(';&|'):
            commands.append(words)
            words = []
        else:
            words.append(word)
    return commands + [words]


def documented_commands(root: str) -> list:
    found = []
    for path in doc_files(root):
        name = os.path.relpath(path, root)
        blocks = [logical_lines(start, body) for start, body in shell_blocks(path)] + [inline_commands(path)]
        for lines in blocks:
            cwd = ''
            for number, text in lines:
                words = text.split()
                first = next((w for w in words if not ENV_ASSIGNMENT.match(w)), '')
                if first != 'cd' and not LAUNCHERS.match(first):
                    continue
                location = f'{name}:{number}'
                try:
                    commands = split_commands(text)
                except ValueError as err:
                    found.append(DocCommand(location, cwd, ['<unparsable>', str(err)]))
                    continue
                for words in commands:
                    while words and ENV_ASSIGNMENT.match(words[0]):
                        words = words[1:]
                    if words[:1] == ['cd']:
                        target = words[1] if len(words) > 1 else '~'
                        # Elsewhere than below the repository (home, absolute, unknown): assume it returns there.
                        outside = target.startswith(('/', '~', '-')) or PLACEHOLDER in target
                        cwd = '' if outside else os.path.normpath(os.path.join(cwd, target))
                    elif words and LAUNCHERS.match(words[0]) and any(w.endswith('.py') for w in words):
                        found.append(DocCommand(location, cwd, words, bool(EXPECTED_ERROR.search(text))))
    files = {os.path.relpath(path, root): i for i, path in enumerate(doc_files(root))}
    return sorted(found, key=lambda doc: (files[doc.location.split(':')[0]], int(doc.location.split(':')[1])))

# ----------------------------------------------------------------------------
# Checking one command against its script.


def _sample_value(param, existing_dir: str, existing_file: str):
    """A value that a user-supplied file or placeholder stands for, and that `param` accepts."""
    if isinstance(param.type, click.Path) and param.type.exists:
        return existing_dir if param.type.dir_okay else existing_file
    if param.type.name == 'cfg':
        return 'placeholder.json'
    if param.type.name in ('path', 'text', 'directory', 'file', 'filename'):
        return 'placeholder'
    return None


def _substitute(command: click.Command, args: list, existing_dir: str, existing_file: str) -> list:
    by_flag = {opt: param for param in command.params if isinstance(param, click.Option) for opt in param.opts}
    result = []
    for arg in args:
        flag, eq, value = arg.partition('=')
        param = by_flag.get(flag) if arg.startswith('--') and eq else None
        if param is not None:
            sample = _sample_value(param, existing_dir, existing_file)
            if sample is not None and (PLACEHOLDER in value or isinstance(param.type, click.Path)):
                arg = f'{flag}={sample}'
        elif not arg.startswith('-') and PLACEHOLDER in arg:
            arg = 'placeholder'
        result.append(arg)
    return result


def check_command(root: str, doc: DocCommand, tmp_dir: str):
    """None if the command parses (or, marked `# expected error`, does not), else one line: file:line, the script
    and what is wrong."""
    problem = _parse_problem(root, doc, tmp_dir)
    if doc.expect_error:
        script = next((w for w in doc.tokens if w.endswith('.py')), '?')
        return None if problem else f'{doc.location}: {script}: marked "# expected error" but parses'
    return problem


def _parse_problem(root: str, doc: DocCommand, tmp_dir: str):
    words = doc.tokens
    if words[0] == '<unparsable>':
        return f'{doc.location}: cannot split the command: {words[1]}'
    index = next(i for i, w in enumerate(words) if w.endswith('.py'))
    script, args = words[index], words[index + 1:]
    where = f'{doc.location}: {script}'
    path = os.path.normpath(os.path.join(root, doc.cwd, script))
    if not os.path.isfile(path):
        return f'{where}: no such script ({os.path.relpath(path, root)})'
    elided = ELLIPSIS in args
    args = [arg for arg in args if arg != ELLIPSIS]
    try:
        entry = script_commands.load_entry(path)
    except Exception as err:  # pylint: disable=broad-except
        return f'{where}: cannot load the script\'s command ({type(err).__name__}: {err})'
    if script_commands.is_click(entry):
        args = _substitute(entry, args, tmp_dir, os.path.join(tmp_dir, 'file'))
        try:
            script_commands.parse_click(entry, args, require=not elided)
        except click.exceptions.Exit as exit_:
            if exit_.exit_code != 0:
                return f'{where}: exit code {exit_.exit_code}'
        except click.ClickException as err:
            return f'{where}: {err.format_message()}'
    else:
        args = [arg.replace(PLACEHOLDER, 'placeholder') for arg in args]
        try:
            script_commands.parse_argparse(entry, args)
        except script_commands.ArgparseError as err:
            return f'{where}: {err}'
    return None


def check_docs(root: str, tmp_dir: str):
    """(number of commands checked, list of problems)."""
    open(os.path.join(tmp_dir, 'file'), 'w').close()
    commands = documented_commands(root)
    problems = [problem for problem in (check_command(root, doc, tmp_dir) for doc in commands) if problem]
    return len(commands), problems

# ----------------------------------------------------------------------------


def test_splitting():
    assert split_commands('A=1 python x.py --a=<your file> --b=$HEAD:29 # comment') == \
        [['A=1', 'python', 'x.py', f'--a={PLACEHOLDER}', f'--b={PLACEHOLDER}:29']]
    assert split_commands('cd a && python b.py; echo "x y"') == [['cd', 'a'], ['python', 'b.py'], ['echo', 'x y']]
    body = ['python a.py --x=1 \\', '    --y=2  # note', "cat > f <<'JSON'", 'python no.py', 'JSON', 'python b.py']
    assert list(logical_lines(10, body)) == [(10, 'python a.py --x=1  --y=2  # note'),
                                             (12, "cat > f <<'JSON'"), (15, 'python b.py')]


def test_documented_commands_parse(tmp_path):
    count, problems = check_docs(REPO_ROOT, str(tmp_path))
    print(f'{count} documented commands checked')
    assert count >= 40, f'only {count} documented commands found: the block parser has stopped finding them'
    assert not problems, '\n'.join(problems)


def _copy_for_check(root: str, scripts: list) -> None:
    """README.md and the scripts it runs, copied under `root`."""
    shutil.copy(os.path.join(REPO_ROOT, 'README.md'), root)
    os.makedirs(os.path.join(root, 'docs'))
    for script in scripts:
        os.makedirs(os.path.dirname(os.path.join(root, script)), exist_ok=True)
        shutil.copy(os.path.join(REPO_ROOT, script), os.path.join(root, script))


@pytest.mark.parametrize('script,flag', [('train.py', '--gamma'), ('gen_samples.py', '--seeds'),
                                         ('projector.py', '--pti-steps')])
def test_renamed_flag_fails(tmp_path, script, flag):
    readme = [doc for doc in documented_commands(REPO_ROOT) if doc.location.startswith('README.md:')]
    scripts = sorted({os.path.normpath(os.path.join(doc.cwd, next(w for w in doc.tokens if w.endswith('.py'))))
                      for doc in readme})
    for name in ['unchanged', 'renamed']:
        (tmp_path / name).mkdir()
        _copy_for_check(str(tmp_path / name), scripts)
    count, problems = check_docs(str(tmp_path / 'unchanged'), str(tmp_path))
    assert count == len(readme) and not problems, problems
    root = tmp_path / 'renamed'
    source = (root / script).read_text()
    assert source.count(f"'{flag}'") == 1
    (root / script).write_text(source.replace(f"'{flag}'", f"'{flag}-renamed'"))
    count, problems = check_docs(str(root), str(tmp_path))
    uses = [doc.location for doc in readme if script in doc.tokens and any(w.startswith(flag + '=') for w in doc.tokens)]
    assert uses
    assert len(problems) == len(uses), problems
    for location, problem in zip(uses, problems):
        assert problem.startswith(f'{location}: {script}: ') and 'No such option' in problem, problem
        assert re.search(f"{flag}\\b(?!-renamed)", problem), problem


def test_problems_name_line_and_flag(tmp_path):
    root = tmp_path / 'docs_root'
    root.mkdir()
    _copy_for_check(str(root), ['gen_samples.py'])
    (root / 'README.md').write_text('\n'.join([
        'Text with `python gen_samples.py --network=x.pkl --seeds=0 --outdir=o [--shapes=maybe]` inline.',
        '```bash',
        'python gen_samples.py --network=<your pickle> --seeds=5-2 --outdir=out',
        'python missing.py --a=1',
        'EG3D_DEBUG=1 python gen_samples.py --network=x.pkl \\',
        '    --seeds=0 --outdir=out --no-such-flag=1',
        'python gen_samples.py --seeds=0 --outdir=out',
        'cd ~/elsewhere && python gen_samples.py --network=x.pkl --seeds=x --outdir=o  # expected error',
        'python gen_samples.py --network=x.pkl --seeds=1 --outdir=o  # expected error',
        '```']))
    count, problems = check_docs(str(root), str(tmp_path))
    assert count == 7 and len(problems) == 6, problems
    assert problems[5] == 'README.md:9: gen_samples.py: marked "# expected error" but parses'
    assert problems[0].startswith('README.md:1: gen_samples.py: ') and '--shapes' in problems[0], problems
    assert problems[1].startswith('README.md:3: gen_samples.py: ') and '--seeds' in problems[1], problems
    assert problems[1].count('empty range') == 1, problems
    assert problems[2] == 'README.md:4: missing.py: no such script (missing.py)'
    assert problems[3].startswith('README.md:5: gen_samples.py: No such option') and '--no-such-flag' in problems[3]
    assert problems[4].startswith('README.md:7: gen_samples.py: ') and '--network' in problems[4], problems

# ----------------------------------------------------------------------------
# The custom-data walkthrough of docs/training.md, run as shown at the demo's size.

CHAIN_DOC = os.path.join('docs', 'training.md')
CHAIN_MARKER = 'cat > myconfig.json'  # The walkthrough is the block that writes this config.
# Appended to each documented command (click keeps the last value of an option given twice): the smallest
# sizes of scripts/demo.py, and a free port for the viewer.
DEMO_SIZE = {
    'train.py': ['--gpus=1', '--batch=4', '--cbase=1024', '--cmax=8', '--neural_rendering_resolution_initial=16',
                 '--depth-resolution=6', '--depth-resolution-importance=6', '--kimg=0.02', '--tick=0.01', '--snap=1',
                 '--metrics=none', '--workers=1', '--blur_fade_kimg=1', '--grid=2x2'],
    'gen_videos.py': ['--w-frames=2', '--sample_mult=1'],
    'projector.py': ['--num-steps=2', '--num-frames=2'],
    'visualizer.py': ['--port=0', '--device=cpu'],
}
# calc_metrics.py runs with fid50k_full reduced to 64 generated images (the metric code is the same).
SMALL_FID = ('import runpy, sys; sys.path.insert(0, {root!r}); '
             'from metrics import metric_main, frechet_inception_distance; '
             'metric_main._define_metric("fid50k_full", metric_main._WHOLE_DATASET, frechet_inception_distance, '
             '"compute_fid", max_real=None, num_gen=64); '
             'sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name="__main__")')


def _chain_steps():
    path = os.path.join(REPO_ROOT, CHAIN_DOC)
    for start, body in shell_blocks(path):
        if any(line.startswith(CHAIN_MARKER) for line in body):
            return [(f'{CHAIN_DOC}:{number}', text) for number, text in logical_lines(start, body, keep_heredoc=True)
                    if text.strip() and not text.lstrip().startswith('#')]
    raise AssertionError(f'{CHAIN_DOC}: no shell block with {CHAIN_MARKER!r}')


@pytest.mark.slow
@pytest.mark.filterwarnings('ignore:`torch.jit')
def test_custom_data_walkthrough_runs(tmp_path):
    home, work = tmp_path / 'home', tmp_path / 'work'
    home.mkdir()
    work.mkdir()
    write_detectors(str(tmp_path / 'detectors'))
    write_stand_in_detector(str(tmp_path / 'detectors'))
    env = dict(os.environ, HOME=str(home), OMP_NUM_THREADS='1', EG3D_DETECTOR_DIR=str(tmp_path / 'detectors'),
               DNNLIB_CACHE_DIR=str(tmp_path / 'cache'))

    def python(location, args, prefix=()):
        result = subprocess.run([sys.executable, *prefix, *args], cwd=work, env=env, capture_output=True, text=True,
                                timeout=900)
        assert result.returncode == 0, f'{location}: {" ".join(args)}\n{result.stdout[-3000:]}{result.stderr[-3000:]}'
        return result

    # The user's images: procedural toys with their dataset.json, in the folder the walkthrough names.
    python('setup', [os.path.join(REPO_ROOT, 'dataset_preprocessing', 'procedural', 'make_procedural_dataset.py'),
                     '--outdir=mycars', '--count=16', '--res=128'])
    seen = set()
    for location, text in _chain_steps():
        if not LAUNCHERS.match(text.split()[0]):
            result = subprocess.run(['bash', '-c', text], cwd=work, env=env, capture_output=True, text=True)
            assert result.returncode == 0, f'{location}: {text}\n{result.stderr}'
            continue
        [words] = split_commands(text)
        script, args = words[1], words[2:] + DEMO_SIZE.get(words[1], [])
        seen.add(script)
        snapshots = sorted(glob.glob(str(home / 'training-runs' / '*' / 'network-snapshot-*.pkl')))
        if snapshots:  # The documented name has the documented sizes (gpus8-batch32) and length in it.
            snapshot = '~/' + os.path.relpath(snapshots[-1], home)
            args = [f'--network={snapshot}' if arg.startswith('--network=') else arg for arg in args]
        resume = next((arg.split('=', 1)[1] for arg in args if arg.startswith('--resume=')), None)
        if resume and '--dry-run' not in args and not (work / resume).exists():
            # The released pickle cannot be downloaded here: a run of the same command from scratch stands in.
            python(location, [os.path.join(REPO_ROOT, script)] +
                   [arg for arg in args if arg != f'--resume={resume}'] + ['--outdir=~/pretrain'])
            shutil.copy(sorted(glob.glob(str(home / 'pretrain' / '*' / 'network-snapshot-*.pkl')))[-1], work / resume)
        command = [os.path.join(REPO_ROOT, script)] + args
        if script == 'visualizer.py':
            with running_viewer(*args, env=env, cwd=work) as (url, _output):
                base, token = url.split('?token=')
                request = urllib.request.Request(base + 'api/config', headers={'Authorization': f'Bearer {token}'})
                with urllib.request.urlopen(request, timeout=60) as answer:
                    config = json.load(answer)
            assert str(home / snapshot[2:]) in config['networks'], config
        elif script == 'calc_metrics.py':
            python(location, command, prefix=['-c', SMALL_FID.format(root=REPO_ROOT)])
        else:
            result = python(location, command)
            if '--dry-run' in args:
                assert 'Training options:' in result.stdout and not (home / 'training-runs').exists()

    assert seen == {'dataset_tool.py', 'train.py', 'gen_samples.py', 'gen_videos.py', 'calc_metrics.py',
                    'visualizer.py', 'projector.py'}
    assert (home / 'datasets' / 'mycars_128.zip').is_file()
    [run_dir] = (home / 'training-runs').iterdir()
    assert run_dir.name == '00000-myconfig-mycars_128-gpus1-batch4-gamma0.3'
    options = json.loads((run_dir / 'training_options.json').read_text())
    assert options['resume_pkl'] == 'shapenetcars128-64.pkl'
    metric = [json.loads(line) for line in (run_dir / 'metric-fid50k_full.jsonl').read_text().splitlines()]
    assert metric[-1]['metric'] == 'fid50k_full' and metric[-1]['num_fake'] == 64
    for name in ['seed0000.png', 'seed0003.png', 'interpolation.mp4', 'fit/proj.png', 'fit/projected_w.npz',
                 'fit/novel_views.mp4']:
        assert (work / 'out' / name).is_file(), name
