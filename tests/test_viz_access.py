"""viz.access: Host, Origin, token and Content-Type checks, and the networks a request may name."""

import os
import socket

import pytest

from viz import access

TOKEN = 'test-token-0123456789'


def refusal(check, *args):
    with pytest.raises(access.Refused) as info:
        check(*args)
    assert '\n' not in str(info.value)
    return info.value.status, str(info.value)


@pytest.mark.parametrize('host', ['localhost:8765', '127.0.0.1:8765', '[::1]:8765', 'LocalHost:8765'])
def test_loopback_hosts_pass(host):
    access.RequestGuard('127.0.0.1', 8765, TOKEN).check_host(host)


@pytest.mark.parametrize('host', [
    'attacker.example:8765',        # DNS rebinding: the attacker's name, resolved to 127.0.0.1
    'localhost:8766',               # another port
    'localhost',                    # port 80 implied
    'localhost.attacker.example:8765',
    'user@localhost:8765',
    'localhost:8765/x',
    '[::1:8765',
    '',
    None,
])
def test_other_hosts_are_refused(host):
    status, message = refusal(access.RequestGuard('127.0.0.1', 8765, TOKEN).check_host, host)
    assert status == 403 and message.startswith('refused: Host ') and 'is not an address of this viewer' in message


def test_hosts_of_a_named_or_wildcard_address():
    named = access.RequestGuard('gpu-box.lan', 8000, TOKEN)
    named.check_host('gpu-box.lan:8000')
    assert refusal(named.check_host, '10.0.0.7:8000')[0] == 403
    wildcard = access.RequestGuard('0.0.0.0', 8000, TOKEN)
    for host in ('10.0.0.7:8000', '[fe80::1]:8000', f'{socket.gethostname()}:8000', 'localhost:8000'):
        wildcard.check_host(host)
    assert refusal(wildcard.check_host, 'attacker.example:8000')[0] == 403  # a name is never any name


def test_origin_must_be_the_page_itself():
    guard = access.RequestGuard('127.0.0.1', 8765, TOKEN)
    guard.check_origin(None, 'localhost:8765')  # not a browser, or a same-origin GET
    guard.check_origin('http://localhost:8765', 'localhost:8765')
    guard.check_origin('http://[::1]:8765', '[::1]:8765')
    for origin in ('http://evil.example', 'http://127.0.0.1:8765', 'https://localhost:8765', 'null',
                   'http://localhost:8766', 'http://[bad'):
        status, message = refusal(guard.check_origin, origin, 'localhost:8765')
        assert status == 403 and message == f'refused: Origin "{origin}" is not this viewer\'s page'


def test_token():
    guard = access.RequestGuard('127.0.0.1', 8765, TOKEN)
    guard.check_token(TOKEN)
    for presented in (None, '', TOKEN[:-1], TOKEN + 'x', 'TEST-TOKEN-0123456789', 'tëst'):
        status, message = refusal(guard.check_token, presented)
        assert status == 403 and message.startswith('refused: missing or wrong token')
    access.RequestGuard('127.0.0.1', 8765, None).check_token(None)  # --no-token
    assert access.bearer_token(f'Bearer {TOKEN}') == access.bearer_token(f'bearer  {TOKEN} ') == TOKEN
    assert access.bearer_token(TOKEN) is None and access.bearer_token(None) is None
    assert access.check_token(TOKEN) == TOKEN
    for bad in ('short', 'has space in it', 'amp&ersand=1', 'x' * 257):
        with pytest.raises(ValueError, match='expected 8 to 256 characters'):
            access.check_token(bad)
    assert access.new_token() != access.new_token() and len(access.new_token()) >= 40


@pytest.mark.parametrize('content_type, ok', [
    ('application/json', True), ('application/json; charset=utf-8', True), ('Application/JSON', True),
    ('text/plain', False), ('text/plain; application/json', False), ('application/x-www-form-urlencoded', False),
    ('multipart/form-data; boundary=x', False), (None, False),
])
def test_content_type(content_type, ok):
    if ok:
        access.RequestGuard.check_json(content_type)
    else:
        status, message = refusal(access.RequestGuard.check_json, content_type)
        assert status == 415 and message.endswith('is not application/json')


def test_loopback_addresses():
    assert all(map(access.is_loopback, ['127.0.0.1', '127.1.2.3', '::1', '[::1]', 'localhost']))
    assert not any(map(access.is_loopback, ['0.0.0.0', '::', '10.0.0.7', 'gpu-box.lan']))

# ----------------------------------------------------------------------------


@pytest.fixture
def files(tmp_path):
    runs = tmp_path / 'runs'
    (runs / 'sub').mkdir(parents=True)
    for name in ('a.pkl', 'sub/b.pkl', 'notes.txt'):
        (runs / name).write_bytes(b'x')
    (tmp_path / 'outside.pkl').write_bytes(b'x')
    os.symlink(tmp_path / 'outside.pkl', runs / 'link.pkl')
    os.symlink(runs / 'a.pkl', runs / 'sub' / 'inside-link.pkl')
    return tmp_path


def test_command_line_networks_only(files, monkeypatch):
    monkeypatch.chdir(files)
    networks = access.NetworkAccess(['runs/a.pkl', 'https://example.com/net.pkl'])
    for name in ('runs/a.pkl', str(files / 'runs' / 'a.pkl'), './runs/sub/../a.pkl', 'https://example.com/net.pkl'):
        networks.check(name)
        assert networks.on_command_line(name)
    answers = set()
    for name in ('runs/sub/b.pkl', 'outside.pkl', '/etc/passwd', '/nonexistent/x.pkl', 'https://example.com/other.pkl',
                 'http://127.0.0.1:9/x.pkl', 'file:///etc/passwd', 'a\0.pkl'):
        answers.add(refusal(networks.check, name))
    assert answers == {(403, access.NOT_OFFERED)}  # one answer, whether the file exists or not
    assert networks.offered() == ['runs/a.pkl', 'https://example.com/net.pkl']


def test_browse_dir(files):
    runs = str(files / 'runs')
    networks = access.NetworkAccess(['x.pkl'], browse_dir=runs)
    # Links count where they lead: link.pkl leads out of the folder.
    expected = [os.path.join(runs, n) for n in ('a.pkl', 'sub/b.pkl', 'sub/inside-link.pkl')]
    assert networks.offered() == ['x.pkl'] + expected
    for name in expected:
        networks.check(name)
    (files / 'runs' / 'new.pkl').write_bytes(b'x')  # a snapshot written after the start
    networks.check(os.path.join(runs, 'new.pkl'))
    assert os.path.join(runs, 'new.pkl') in networks.offered()
    assert not networks.on_command_line(os.path.join(runs, 'new.pkl'))
    for name in ('notes.txt', 'missing.pkl', 'link.pkl', '../outside.pkl', 'sub/../../outside.pkl'):
        assert refusal(networks.check, os.path.join(runs, name)) == (403, access.NOT_OFFERED), name


def test_allow_any_network():
    networks = access.NetworkAccess(['a.pkl'], allow_any=True)
    for name in ('/etc/passwd', 'http://127.0.0.1:9/x.pkl'):
        networks.check(name)
        assert not networks.on_command_line(name)
