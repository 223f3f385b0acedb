import hashlib
import os
import pickle
import sys

import pytest

import dnnlib
from dnnlib import util


def test_easydict_attribute_access_and_pickle():
    d = dnnlib.EasyDict(a=1)
    d.b = 2
    assert d['b'] == 2 and d.a == 1
    del d.a
    assert 'a' not in d
    with pytest.raises(AttributeError):
        _ = d.missing
    with pytest.raises(AttributeError):
        del d.missing
    assert not hasattr(d, 'missing') and getattr(d, 'b') == 2
    assert dnnlib.EasyDict is util.EasyDict
    assert b'dnnlib.util' in pickle.dumps(d)
    assert pickle.loads(pickle.dumps(d)) == {'b': 2}


def test_construct_and_call_by_name():
    od = util.construct_class_by_name([('x', 1)], class_name='collections.OrderedDict')
    assert list(od.items()) == [('x', 1)]
    assert util.call_func_by_name(4, func_name='math.sqrt') == 2.0
    assert util.get_obj_by_name('dnnlib.util.EasyDict') is dnnlib.EasyDict
    with pytest.raises(ImportError):
        util.get_obj_by_name('dnnlib.util.NoSuchThing')


def test_format_time():
    assert util.format_time(5) == '5s'
    assert util.format_time(65) == '1m 05s'
    assert util.format_time(3 * 3600 + 61) == '3h 01m 01s'
    assert util.format_time(2 * 86400 + 3600 * 5 + 120) == '2d 05h 02m'


def test_open_url_local_and_file_url(tmp_path):
    path = tmp_path / 'x.bin'
    path.write_bytes(b'hello')
    with util.open_url(str(path)) as f:
        assert f.read() == b'hello'
    with util.open_url('file://' + str(path)) as f:
        assert f.read() == b'hello'
    assert util.open_url(str(path), return_filename=True) == str(path)
    with pytest.raises(FileNotFoundError, match='no such file'):
        util.open_url(str(tmp_path / 'missing.pkl'))


def test_open_url_uses_cache_named_by_url_hash(tmp_path, monkeypatch):
    monkeypatch.setenv('DNNLIB_CACHE_DIR', str(tmp_path))
    url = 'https://example.com/some/network.pkl'
    expected = tmp_path / 'downloads' / (hashlib.md5(url.encode()).hexdigest() + '_network.pkl')
    assert util.url_cache_path(url) == str(expected)
    expected.parent.mkdir(parents=True)
    expected.write_bytes(b'cached')

    def no_network(*args, **kwargs):
        raise AssertionError('the cache should have been used')
    monkeypatch.setattr(util.urllib.request, 'urlopen', no_network)
    with util.open_url(url) as f:
        assert f.read() == b'cached'


def test_open_url_offline_names_url_and_cache_path(tmp_path, monkeypatch):
    monkeypatch.setenv('DNNLIB_CACHE_DIR', str(tmp_path))
    url = 'https://example.com/detector.pkl'

    def offline(*args, **kwargs):
        raise util.urllib.error.URLError(OSError('Name or service not known'))
    monkeypatch.setattr(util.urllib.request, 'urlopen', offline)
    with pytest.raises(util.DownloadError) as info:
        util.open_url(url, verbose=False)
    message = str(info.value)
    assert url in message and util.url_cache_path(url) in message and '\n' not in message


def test_open_url_download_written_to_cache(tmp_path, monkeypatch):
    monkeypatch.setenv('DNNLIB_CACHE_DIR', str(tmp_path))
    url = 'https://example.com/file.txt'

    class Response:
        def __enter__(self):
            return self

        def __exit__(self, *args):
            pass

        def read(self):
            return b'payload'
    monkeypatch.setattr(util.urllib.request, 'urlopen', lambda *a, **k: Response())
    assert util.open_url(url, verbose=False).read() == b'payload'
    with open(util.url_cache_path(url), 'rb') as f:
        assert f.read() == b'payload'


def test_make_cache_dir_path(monkeypatch, tmp_path):
    monkeypatch.setenv('DNNLIB_CACHE_DIR', str(tmp_path))
    assert util.make_cache_dir_path('a', 'b') == os.path.join(str(tmp_path), 'a', 'b')


def test_logger_tees_to_file(tmp_path, capsys):
    log = tmp_path / 'log.txt'
    with util.Logger(file_name=str(log)):
        print('to both')
    assert 'to both' in capsys.readouterr().out
    assert log.read_text() == 'to both\n'


def test_make_cache_dir_path_order(monkeypatch, tmp_path):
    monkeypatch.setattr(util, '_dnnlib_cache_dir', None)
    monkeypatch.setenv('DNNLIB_CACHE_DIR', str(tmp_path / 'env'))
    assert util.make_cache_dir_path('x') == os.path.join(str(tmp_path / 'env'), 'x')
    monkeypatch.delenv('DNNLIB_CACHE_DIR')
    monkeypatch.setenv('HOME', str(tmp_path / 'home'))
    assert util.make_cache_dir_path('x') == os.path.join(str(tmp_path / 'home'), '.cache', 'dnnlib', 'x')
    monkeypatch.delenv('HOME')
    monkeypatch.setenv('USERPROFILE', str(tmp_path / 'profile'))
    assert util.make_cache_dir_path() == os.path.join(str(tmp_path / 'profile'), '.cache', 'dnnlib')


def test_restrict_names_vetoes_before_import(tmp_path, monkeypatch):
    (tmp_path / 'restrict_canary.py').write_text(f'open({str(tmp_path / "MARKER")!r}, "w").close()\nvalue = 1\n')
    monkeypatch.syspath_prepend(str(tmp_path))

    def only_dnnlib(name):
        if not name.startswith('dnnlib.'):
            raise PermissionError(name)
    with util.restrict_names(only_dnnlib):
        assert util.construct_class_by_name(class_name='dnnlib.util.EasyDict', a=1) == {'a': 1}
        with pytest.raises(PermissionError, match='restrict_canary.value'):
            util.get_obj_by_name('restrict_canary.value')
    assert not (tmp_path / 'MARKER').exists()
    assert util.get_obj_by_name('restrict_canary.value') == 1  # the check ends with the context
    assert (tmp_path / 'MARKER').exists()
    del sys.modules['restrict_canary']


def test_logger_tees_stderr_and_restores_streams(tmp_path, capsys):
    before = sys.stdout, sys.stderr
    log = tmp_path / 'log.txt'
    with util.Logger(file_name=str(log), file_mode='w', should_flush=False) as logger:
        print('out')
        print('err', file=sys.stderr)
        sys.stdout.write(b'bytes\n')
        assert not logger.isatty()
    assert (sys.stdout, sys.stderr) == before
    assert log.read_text() == 'out\nerr\nbytes\n'
    assert capsys.readouterr().out == 'out\nerr\nbytes\n'
