"""Who may read the dashboard, decided before and during a run: which token the options and
the environment give (and which wins), which bind addresses need one, and which Host names a
token-less dashboard answers. Parsed by the runtime's own `run` parser, served in-process on
an ephemeral loopback port; raw sockets where a browser would not send what we test."""

from __future__ import annotations

import socket

import pytest
from fer_edge.edge.cli import build_parser
from fer_edge.edge.dashboard import TOKEN_ENV, Dashboard, DashboardSettings, is_loopback
from fer_edge.edge.errors import ConfigError

TOKEN = "cli-token-0123456789abcdef"
ENV_TOKEN = "env-token-0123456789abcdef"
FILE_TOKEN = "file-token-0123456789abcdef"


def settings(*flags: str) -> DashboardSettings:
    args = build_parser().parse_args(["run", "--dashboard", "8080", *flags])
    return DashboardSettings.from_args(args)


@pytest.fixture
def no_env_token(monkeypatch):
    monkeypatch.delenv(TOKEN_ENV, raising=False)


@pytest.mark.parametrize(
    "host",
    ["localhost", "LocalHost", "localhost.", "LOCALHOST.", "127.0.0.1", "127.8.9.10", "::1",
     "[::1]", "0:0:0:0:0:0:0:1"],
)  # fmt: skip
def test_loopback_names_and_addresses(host):
    assert is_loopback(host)


@pytest.mark.parametrize(
    "host",
    ["", "0.0.0.0", "::", "[::]", "192.168.1.20", "10.0.0.1", "localhost.example",
     "my-localhost", "evil.example", "[127.0.0.1]x", "::ffff:192.168.1.20"],
)  # fmt: skip
def test_everything_else_is_not_loopback(host):
    assert not is_loopback(host)


def test_defaults_serve_loopback_without_a_token(no_env_token):
    s = settings()
    assert (s.port, s.host, s.token) == (8080, "127.0.0.1", None)
    assert (s.window, s.video_fps) == (300.0, 15.0)


def test_the_environment_gives_the_token_when_no_option_does(monkeypatch):
    monkeypatch.setenv(TOKEN_ENV, f"  {ENV_TOKEN}\n")
    assert settings().token == ENV_TOKEN
    # and with it the dashboard may bind beyond loopback
    assert settings("--dashboard-host", "0.0.0.0").token == ENV_TOKEN


def test_an_option_wins_over_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(TOKEN_ENV, ENV_TOKEN)
    assert settings("--dashboard-token", TOKEN).token == TOKEN
    path = tmp_path / "token"
    path.write_text(FILE_TOKEN + "\n")
    assert settings("--dashboard-token-file", str(path)).token == FILE_TOKEN
    # the file wins over a token typed on the command line too
    assert settings("--dashboard-token", TOKEN, "--dashboard-token-file", str(path)).token == (
        FILE_TOKEN
    )


def test_a_bad_token_names_where_it_came_from(monkeypatch, tmp_path):
    monkeypatch.setenv(TOKEN_ENV, "short")
    with pytest.raises(ConfigError) as exc:
        settings()
    assert str(exc.value) == (
        f"{TOKEN_ENV}: give a token of at least 16 letters, digits or ._~+/=- "
        "(e.g. python3 -c 'import secrets; print(secrets.token_urlsafe(24))')"
    )
    monkeypatch.delenv(TOKEN_ENV)
    path = tmp_path / "token"
    path.write_text("has spaces in it but is long enough\n")
    with pytest.raises(ConfigError, match=f"^--dashboard-token-file {path}: give a token"):
        settings("--dashboard-token-file", str(path))
    with pytest.raises(ConfigError, match="^--dashboard-token: give a token of at least 16"):
        settings("--dashboard-token", "x" * 15)
    assert settings("--dashboard-token", "x" * 16).token == "x" * 16


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.20", "::", "pi.local"])
def test_binding_beyond_loopback_without_a_token_is_refused(no_env_token, host, tmp_path):
    with pytest.raises(ConfigError) as exc:
        settings("--dashboard-host", host)
    assert str(exc.value) == (
        f"--dashboard-host {host}: serving beyond loopback needs a token; pass "
        f"--dashboard-token-file PATH (or --dashboard-token, or set {TOKEN_ENV}), or bind "
        "127.0.0.1 and use an SSH tunnel"
    )
    empty = tmp_path / "empty"
    empty.write_text("\n")  # an empty token file is a mistake, not "no token"
    with pytest.raises(ConfigError, match=f"^--dashboard-token-file {empty}: give a token"):
        settings("--dashboard-host", host, "--dashboard-token-file", str(empty))


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "[::1]", "localhost"])
def test_binding_loopback_needs_no_token(no_env_token, host):
    assert settings("--dashboard-host", host).host == host


def raw_get(port: int, request: bytes) -> bytes:
    """The response's status line to a request written byte for byte."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        conn.sendall(request)
        data = b""
        while b"\r\n" not in data:
            chunk = conn.recv(1024)
            if not chunk:
                break
            data += chunk
    return data.split(b"\r\n", 1)[0]


def test_a_token_less_dashboard_answers_loopback_host_names_only():
    with Dashboard(DashboardSettings(port=0), ("neutral",), {}) as dash:

        def status(host: str | None) -> bytes:
            header = b"" if host is None else f"Host: {host}\r\n".encode()
            return raw_get(dash.port, b"GET /api/state HTTP/1.0\r\n" + header + b"\r\n")

        for host in (f"127.0.0.1:{dash.port}", "localhost", f"LOCALHOST.:{dash.port}",
                     f"[::1]:{dash.port}", "127.0.0.2"):  # fmt: skip
            assert status(host) == b"HTTP/1.0 200 OK", host
        for host in (None, "", f"attacker.example:{dash.port}", "localhost.attacker.example",
                     f"192.168.1.20:{dash.port}", "[::ffff:7f00:1]x"):  # fmt: skip
            assert status(host) == b"HTTP/1.0 403 Forbidden", host


def test_a_token_dashboard_ignores_the_host_name_and_asks_for_the_token():
    with Dashboard(DashboardSettings(port=0, token=TOKEN), ("neutral",), {}) as dash:
        for host in ("attacker.example", "127.0.0.1"):
            head = f"GET /api/state HTTP/1.0\r\nHost: {host}\r\n"
            assert raw_get(dash.port, (head + "\r\n").encode()) == b"HTTP/1.0 401 Unauthorized"
            right = head + f"Authorization: Bearer {TOKEN}\r\n\r\n"
            assert raw_get(dash.port, right.encode()) == b"HTTP/1.0 200 OK"
        # the scheme is Bearer, with its space; a cookie of another name is no token
        for header in (f"Authorization: Basic {TOKEN}", f"Authorization: Bearer{TOKEN}",
                       f"Cookie: other={TOKEN}"):  # fmt: skip
            request = f"GET /api/state HTTP/1.0\r\n{header}\r\n\r\n"
            assert raw_get(dash.port, request.encode()) == b"HTTP/1.0 401 Unauthorized", header
        # a token padded with spaces after Bearer is still the token
        request = f"GET /api/state HTTP/1.0\r\nAuthorization: Bearer  {TOKEN} \r\n\r\n"
        assert raw_get(dash.port, request.encode()) == b"HTTP/1.0 200 OK"
