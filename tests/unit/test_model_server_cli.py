"""`botenv model-server`'s connection limits: flags, BOTENV_* fallbacks, bad values."""

from __future__ import annotations

import pytest

from botenv import cli


def parse(*argv: str):
    return cli.build_parser().parse_args(["model-server", *argv])


def test_connection_limit_defaults(monkeypatch):
    for name in ("HEADER_TIMEOUT", "KEEPALIVE_TIMEOUT", "MAX_CONNECTIONS"):
        monkeypatch.delenv(f"BOTENV_MODEL_SERVER_{name}", raising=False)
    args = parse()
    assert (args.header_timeout, args.keepalive_timeout, args.max_connections) == (10, 15, 512)


def test_flags_win_over_environment(monkeypatch):
    monkeypatch.setenv("BOTENV_MODEL_SERVER_HEADER_TIMEOUT", "4")
    monkeypatch.setenv("BOTENV_MODEL_SERVER_KEEPALIVE_TIMEOUT", "30.5")
    monkeypatch.setenv("BOTENV_MODEL_SERVER_MAX_CONNECTIONS", "64")
    args = parse()
    assert (args.header_timeout, args.keepalive_timeout, args.max_connections) == (4, 30.5, 64)
    args = parse("--header-timeout", "2", "--max-connections", "8")
    assert (args.header_timeout, args.max_connections) == (2, 8)


@pytest.mark.parametrize(
    "argv",
    [
        ["--header-timeout", "0"],
        ["--header-timeout", "-1"],
        ["--keepalive-timeout", "nan"],
        ["--keepalive-timeout", "inf"],
        ["--max-connections", "0"],
        ["--max-connections", "1.5"],
    ],
)
def test_bad_limits_are_usage_errors(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        parse(*argv)
    assert exc.value.code == 2
    assert "positive" in capsys.readouterr().err


def test_bad_environment_value_is_a_usage_error(monkeypatch, capsys):
    monkeypatch.setenv("BOTENV_MODEL_SERVER_MAX_CONNECTIONS", "many")
    with pytest.raises(SystemExit):
        parse()
    assert "--max-connections" in capsys.readouterr().err
