"""Who may drive the viewer, and which networks a request may name.

A page on any web site can send requests to a server on 127.0.0.1, and DNS rebinding lets it read the answers,
so the server trusts nothing about a request's origin: every API call presents the per-run token, its Host must
be an address of the viewer, a browser's Origin must be the viewer's own, and a body must be declared as JSON (a
cross-site page cannot send that without a CORS preflight, which the server never grants). A request may name only
the networks the command line offered, unless the user started the viewer with --allow-any-network.
"""

import glob
import ipaddress
import os
import re
import secrets
import socket
import urllib.parse

TOKEN_PATTERN = re.compile(r'[A-Za-z0-9._~-]{8,256}')   # Characters that travel unchanged in a URL query.
WILDCARD_HOSTS = ('', '0.0.0.0', '::')
NOT_OFFERED = ('"network": not one of the networks this viewer offers (its command-line networks and the *.pkl '
               'files under --browse-dir; --allow-any-network lets the page name any path or URL)')


class Refused(Exception):
    """A request the server refuses before doing any work: an HTTP status and a one-line message."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def new_token() -> str:
    return secrets.token_urlsafe(32)


def check_token(token: str) -> str:
    """A --token value, or ValueError: it has to travel unchanged in the page's URL."""
    if not TOKEN_PATTERN.fullmatch(token):
        raise ValueError('expected 8 to 256 characters out of A-Z a-z 0-9 . _ ~ -')
    return token


def is_loopback(host: str) -> bool:
    if host.lower() == 'localhost':
        return True
    try:
        return ipaddress.ip_address(host.strip('[]')).is_loopback
    except ValueError:
        return False


def _is_ip_literal(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        return False


def _split_host(value: str):
    """'name:port' or '[v6]:port' -> (lower-case name, port), or None if it is not just a host."""
    try:
        parts = urllib.parse.urlsplit(f'//{value}')
        plain = parts.hostname and not (parts.path or parts.query or parts.fragment or '@' in parts.netloc)
        return (parts.hostname, parts.port or 80) if plain else None
    except ValueError:
        return None


class RequestGuard:
    """The checks every request passes before it is served (raise Refused)."""

    def __init__(self, host: str, port: int, token):
        self.port = port
        self.token = token
        self._names = {'localhost', '127.0.0.1', '::1', host.strip('[]').lower()}
        # Bound to every interface, the viewer is reached under this machine's names or addresses. A rebound
        # Host is always a domain name, never an IP literal.
        self._wildcard = host in WILDCARD_HOSTS
        if self._wildcard:
            self._names |= {socket.gethostname().lower(), socket.getfqdn().lower()}

    def check_host(self, value) -> None:
        address = _split_host(value or '')
        allowed = address is not None and address[1] == self.port and (
            address[0] in self._names or (self._wildcard and _is_ip_literal(address[0])))
        if not allowed:
            raise Refused(403, f'refused: Host {_quoted(value)} is not an address of this viewer')

    def check_origin(self, origin, host) -> None:
        """A browser names the page that sends a request; only the viewer's own page may (host already checked)."""
        if origin is None:
            return
        try:
            parts = urllib.parse.urlsplit(origin)
            same = parts.scheme == 'http' and (parts.hostname, parts.port or 80) == _split_host(host)
        except ValueError:
            same = False
        if not same:
            raise Refused(403, f'refused: Origin {_quoted(origin)} is not this viewer\'s page')

    def check_token(self, presented) -> None:
        if self.token is None:
            return
        if presented is None or not secrets.compare_digest(presented.encode('utf-8'), self.token.encode('utf-8')):
            raise Refused(403, 'refused: missing or wrong token (open the URL with ?token= that visualizer.py '
                               'printed; scripts send "Authorization: Bearer <token>")')

    @staticmethod
    def check_json(content_type) -> None:
        if (content_type or '').split(';')[0].strip().lower() != 'application/json':
            raise Refused(415, f'refused: Content-Type {_quoted(content_type)} is not application/json')


def _quoted(value) -> str:
    """A header value quoted on one line, whatever it holds."""
    return 'none' if value is None else '"' + value.encode('unicode_escape').decode('ascii').replace('"', '\\"') + '"'


def bearer_token(authorization):
    """The token of an 'Authorization: Bearer <token>' header, or None."""
    scheme, _, value = (authorization or '').partition(' ')
    return value.strip() if scheme.lower() == 'bearer' else None

# ----------------------------------------------------------------------------


def canonical_network(name: str):
    """The identity of a network name: a URL as written, a local path resolved (links and '..'); None if invalid."""
    if '://' in name:
        return name
    try:
        return os.path.realpath(name)
    except (OSError, ValueError):  # e.g. an embedded NUL character
        return None


def _inside(path: str, root: str) -> bool:
    """Whether a resolved path is a file under the resolved folder root."""
    return os.path.commonpath([path, root]) == root and os.path.isfile(path)


def browse(browse_dir) -> list:
    """Every *.pkl below a folder that is a file there (a link counts if it resolves to one there), sorted."""
    if browse_dir is None:
        return []
    root = os.path.realpath(browse_dir)
    found = glob.glob(os.path.join(browse_dir, '**', '*.pkl'), recursive=True)
    return sorted(path for path in found if _inside(os.path.realpath(path), root))


class NetworkAccess:
    """The networks a request may name: the command line's, the *.pkl files under browse_dir, or any (allow_any)."""

    def __init__(self, networks=(), browse_dir=None, allow_any=False):
        self.networks = list(networks)
        self.browse_dir = browse_dir
        self.allow_any = allow_any
        self._named = {canonical_network(name) for name in self.networks}
        self._browse_root = None if browse_dir is None else os.path.realpath(browse_dir)

    def offered(self) -> list:
        """What the page lists: the command-line networks, then whatever *.pkl files browse_dir holds now."""
        return list(dict.fromkeys(self.networks + browse(self.browse_dir)))

    def on_command_line(self, name: str) -> bool:
        return canonical_network(name) in self._named

    def check(self, name: str) -> None:
        """Refused(403) unless a request may load `name`; the answer is the same whether the file exists or not."""
        if self.allow_any or self.on_command_line(name) or self._browsable(name):
            return
        raise Refused(403, NOT_OFFERED)

    def _browsable(self, name: str) -> bool:
        path = None if '://' in name else canonical_network(name)
        if self._browse_root is None or path is None or not path.endswith('.pkl'):
            return False
        return _inside(path, self._browse_root)
