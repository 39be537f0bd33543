"""A bad environment setting is one line naming its variable (exit 2), never a traceback.

README "Configuration": "an invalid zone is an error naming the variable"; the same holds for
every variable the `costline` commands and the gateway read.
"""

from __future__ import annotations

import pytest

from core import cli
from core.errors import ConfigError


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = cli.main(argv)
    return code, capsys.readouterr().err


@pytest.fixture
def no_server(monkeypatch: pytest.MonkeyPatch) -> None:
    """The gateway must refuse before uvicorn starts: starting it fails the test."""
    import uvicorn

    def started(*_a: object, **_k: object) -> None:
        raise AssertionError("the gateway started with a bad setting")

    monkeypatch.setattr(uvicorn, "run", started)


def test_gateway_port_variable_garbage_names_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], no_server: None
) -> None:
    monkeypatch.setenv("COSTLINE_GATEWAY_PORT", "forty")
    code, err = _run(["gateway"], capsys)
    assert code == 2
    assert "COSTLINE_GATEWAY_PORT" in err and "'forty'" in err and "Traceback" not in err
    # a command that does not serve the gateway is not broken by it
    assert cli.main(["doctor"]) == 0


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("COSTLINE_RECONCILE_S", "soon"),
        ("COSTLINE_UPSTREAM_TIMEOUT_S", "0"),
        ("OPENAI_TIMEOUT_S", "long"),
        ("COSTLINE_TIMEZONE", "Mars/Olympus"),
        ("REDIS_URL", "garbage"),
        ("COSTLINE_CONTROL_URL", "garbage"),
        ("COSTLINE_GATEWAY_TRANSPORT", "carrier-pigeon"),
    ],
)
def test_gateway_refuses_bad_setting_before_serving(
    name: str,
    value: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    no_server: None,
) -> None:
    monkeypatch.setenv(name, value)
    code, err = _run(["gateway", "--port", "1"], capsys)
    assert code == 2
    assert err.startswith("costline gateway: ") and name in err and "Traceback" not in err


@pytest.mark.parametrize("argv", [["users", "list"], ["tokens", "list"], ["keys", "list"]])
def test_control_url_garbage_names_the_variable(
    argv: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("COSTLINE_CONTROL_URL", "garbage")
    code, err = _run(argv, capsys)
    assert code == 2
    assert "COSTLINE_CONTROL_URL 'garbage' is not a database URL" in err


def test_redis_url_garbage_names_the_variable_and_hides_its_password(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from core.state import make_state

    monkeypatch.setenv("REDIS_URL", "reddis://:hunter2@cache:6379/0")
    with pytest.raises(ConfigError, match="REDIS_URL") as caught:
        make_state()
    assert "hunter2" not in str(caught.value) and "cache:6379" in str(caught.value)


@pytest.mark.parametrize("name", ["COSTLINE_DRYRUN_LATENCY_MS", "COSTLINE_DRYRUN_MS_PER_TOKEN"])
def test_dryrun_delay_garbage_names_the_variable(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from core.providers.dryrun import DryRunProvider
    from core.settings import Settings

    monkeypatch.setenv(name, "fast")
    with pytest.raises(ConfigError, match=name):
        DryRunProvider.from_config(Settings.from_env().provider("dryrun"))


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["tokens", "revoke"], "--id ID is required"),
        (["prune", "--days", "-3"], "costline prune: retention_days: must be"),
        # it said "No retention set (raw events are kept forever)" and exited 0
        (["prune", "--days", "0"], "costline prune: retention_days: must be"),
        (["demo", "--days", "0"], "costline demo: days must be 1-3660"),
    ],
)
def test_bad_arguments_are_one_line(
    argv: list[str], said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = _run(argv, capsys)
    assert code == 2 and said in err and "Traceback" not in err


def test_token_before_any_user_says_how_to_get_one(capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _run(["tokens", "create", "--user", "admin"], capsys)
    assert code == 2 and "no console users yet" in err and "costline console" in err


def test_token_for_an_unknown_user_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    from core.control import SYSTEM, ControlPlane

    with ControlPlane() as plane:
        plane.create_user("ann", "password-123", "viewer", SYSTEM)
    code, err = _run(["tokens", "create", "--user", "nobody"], capsys)
    assert code == 2 and err == "costline tokens: user: no user 'nobody'\n"


def test_worker_once_counts_in_words() -> None:
    """`costline worker --once` said "found {'anomaly': 3}, recorded {}" (Python dicts)."""
    assert cli._kinds({}) == "0"
    assert cli._kinds({"budget": 1, "anomaly": 2}) == "3 (anomaly 2, budget 1)"


@pytest.mark.parametrize(
    ("name", "read"),
    [
        ("COSTLINE_OTEL", lambda: __import__("core.settings").settings.Settings.from_env().otel),
        (
            "COSTLINE_GATEWAY_ALERT_WORKER",
            lambda: __import__("core.gateway").gateway.GatewayConfig.from_env().alert_worker,
        ),
        (
            "COSTLINE_GATEWAY_METRICS_PUBLIC",
            lambda: __import__("core.gateway").gateway.GatewayConfig.from_env().metrics_public,
        ),
    ],
)
def test_on_off_variables_read_every_spelling_and_refuse_garbage(
    name: str, read: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    """'off' used to leave COSTLINE_GATEWAY_ALERT_WORKER on, 'True' COSTLINE_OTEL off."""
    assert callable(read)
    for text, want in [("on", True), ("True", True), ("YES", True), ("off", False), ("0", False)]:
        monkeypatch.setenv(name, text)
        assert read() is want, text
    monkeypatch.setenv(name, "maybe")
    with pytest.raises(ConfigError, match=name):
        read()


def test_console_worker_variable_garbage_names_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("COSTLINE_WORKER", "nope")
    monkeypatch.setattr(cli, "run_forwarding", lambda *_a: 0)  # no Streamlit
    code, err = _run(["console", "--no-demo"], capsys)
    assert code == 2 and "COSTLINE_WORKER" in err
    assert cli.main(["doctor"]) == 0  # other commands do not read it


def test_keys_list_columns_stay_aligned(capsys: pytest.CaptureFixture[str]) -> None:
    """A long binding used to push that row's expiry out of its column."""
    assert cli.main(["keys", "create", "--name", "ci"]) == 0
    long = ["keys", "create", "--name", "web", "--project", "shop"]
    assert cli.main([*long, "--models", "gpt-4o-mini,dryrun-small", "--expires", "2099-06-30"]) == 0
    capsys.readouterr()
    assert cli.main(["keys", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    at = lines[0].index("expires")
    assert [line[at:] for line in lines] == ["expires", "-", "2099-07-01 00:00"]


def test_api_refuses_a_bad_setting_before_serving(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`costline api` with REDIS_URL=garbage started, then answered 422 on GET /limits."""
    import core.api

    def started(*_a: object, **_k: object) -> None:
        raise AssertionError("the API started with a bad setting")

    monkeypatch.setattr(core.api, "serve", started)
    monkeypatch.setenv("REDIS_URL", "garbage")
    code, err = _run(["api", "--port", "1"], capsys)
    assert code == 2 and err.startswith("costline api: REDIS_URL 'garbage'")


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("foo://ann:hunter2@db/costline", "names no database SQLAlchemy knows"),
        ("mysql://ann:hunter2@db/costline", "needs a database driver that is not installed"),
    ],
)
def test_control_url_of_an_unknown_database_is_a_config_error_naming_the_variable(
    url: str, problem: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before, SQLAlchemy's NoSuchModuleError (or the driver's ImportError) reached a library
    user's Router() outside the error tree, and the CLI printed a traceback."""
    from core.router import Router

    monkeypatch.setenv("COSTLINE_CONTROL_URL", url)
    with pytest.raises(ConfigError, match="COSTLINE_CONTROL_URL") as caught:
        Router()
    assert problem in str(caught.value) and "hunter2" not in str(caught.value)
    assert caught.value.field == "COSTLINE_CONTROL_URL"
    code, err = _run(["users", "list"], capsys)
    assert code == 2 and "COSTLINE_CONTROL_URL" in err and "Traceback" not in err


@pytest.mark.parametrize("value", ["-1", "0", "-0.5", "inf"])
@pytest.mark.parametrize("name", ["OPENAI_TIMEOUT_S", "COSTLINE_UPSTREAM_TIMEOUT_S"])
def test_a_timeout_that_is_not_above_0_says_it_must_be(
    name: str, value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before, -1 was told 'must be >= 0 seconds', and then 0 'must be > 0 seconds'."""
    from core.settings import Settings

    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as caught:
        Settings.from_env().provider("openai")
    assert str(caught.value) == f"{name} must be > 0 seconds, got {value!r}"


@pytest.mark.parametrize("command", ["api", "gateway"])
@pytest.mark.parametrize("port", ["70000", "0", "-1", "http"])
def test_a_port_flag_out_of_range_is_refused_before_serving(
    command: str,
    port: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`costline api --port 70000` served on port 4464 (the resolver takes the number
    modulo 65536) while it printed 70000; the gateway's flag did the same, though its
    COSTLINE_GATEWAY_PORT refused such a port. Now each is refused (exit 2) before serving."""
    import uvicorn

    import core.api

    def started(*_a: object, **_k: object) -> None:
        raise AssertionError(f"costline {command} started on port {port}")

    monkeypatch.setattr(core.api, "serve", started)
    monkeypatch.setattr(uvicorn, "run", started)
    with pytest.raises(SystemExit) as exited:
        cli.main([command, "--port", port])
    err = capsys.readouterr().err
    assert exited.value.code == 2
    assert f"argument --port: must be a port number 1-65535, got '{port}'" in err, err


@pytest.mark.parametrize("argv", [["worker", "--once"], ["tokens", "list"], ["keys", "list"]])
def test_a_control_plane_that_does_not_answer_is_one_line(
    argv: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """PostgreSQL down (nothing listens on its port): every command that needs the control
    plane printed a 40-line SQLAlchemy traceback; now one line naming the URL (never its
    password) and the driver's reason, exit 1."""
    from tests.servers.ports import free_port

    port = free_port()
    monkeypatch.setenv("COSTLINE_CONTROL_URL", f"postgresql://ops:s3cret@127.0.0.1:{port}/cl")
    code, err = _run(argv, capsys)
    assert code == 1, err
    assert err.count("\n") == 1 and "Traceback" not in err and "s3cret" not in err, err
    assert err.startswith(
        f"costline {argv[0]}: the control plane postgresql+psycopg://ops:***@127.0.0.1:{port}/cl"
        " (COSTLINE_CONTROL_URL) cannot be used: connection failed"
    ), err


def test_doctor_on_a_home_that_does_not_exist_says_so(
    tmp_path: object, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A mistyped COSTLINE_HOME: `costline doctor` reported "0 segments, 0 events; ...
    0 MB free", "quarantine empty" and exit 0 - a healthy log. Now it names the missing
    directory and exits 1, creating nothing."""
    from pathlib import Path

    home = Path(str(tmp_path)) / "costline-hoem"
    monkeypatch.setenv("COSTLINE_HOME", str(home))
    assert cli.main(["doctor"]) == 1
    out = capsys.readouterr().out
    assert f"{home} does not exist: nothing was ever logged here" in out, out
    assert not home.exists()


def test_import_map_to_a_field_that_does_not_exist_names_it(
    tmp_path: object, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--map model=modle` (a typo): it said "no column of u.csv was recognised as model",
    though the file has a column model that the header had mapped; now the typo is named."""
    from pathlib import Path

    file = Path(str(tmp_path)) / "u.csv"
    file.write_text(
        "timestamp,model,input_tokens,output_tokens\n2026-11-01T10:00:00Z,gpt-4o-mini,100,20\n"
    )
    code, err = _run(["import", str(file), "--map", "model=modle", "--dry-run"], capsys)
    assert code == 2
    assert err.startswith("costline import: --map model=modle: 'modle' is not a field (fields: ")
    assert "recognised" not in err


def test_prune_with_the_usage_log_in_a_bucket_says_it_does_not_run(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Retention works on local segments only: with COSTLINE_EVENTS_URL set, `costline
    prune --days 3` printed "Removed 0 segments (0 raw events before ...); their hourly
    rollups keep every total exact" and exit 0, as if nothing were old enough."""
    monkeypatch.setenv("COSTLINE_EVENTS_URL", "s3://usage/costline")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1")
    code, err = _run(["prune", "--days", "3"], capsys)
    assert code == 2
    assert err.startswith(
        "costline prune: retention does not run with the usage log in a bucket (s3://usage/"
    ), err


def test_compact_of_a_bucket_that_does_not_answer_fails(
    costline_home: object, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`costline compact` from cron with the bucket down: it printed "Merged 0 usage
    segments in s3://... into 0." and exit 0, the same as when nothing needed merging."""
    from tests.servers.ports import free_port

    monkeypatch.setenv("COSTLINE_EVENTS_URL", "s3://usage/costline")
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    code, err = _run(["compact"], capsys)
    assert code == 1, err
    assert (
        "costline compact: nothing compacted: the bucket s3://usage/costline could not be listed"
        in err
    ), err


def test_a_bad_time_zone_is_refused_when_a_router_starts_and_doctor_reports_it(
    tmp_path: object, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before, Router() started with COSTLINE_TIMEZONE=Mars/Olympus and failed only at the
    first call a budget's window was computed for; doctor said nothing."""
    from pathlib import Path

    from core import Router

    home = Path(str(tmp_path))
    monkeypatch.setenv("COSTLINE_HOME", str(home))
    monkeypatch.setenv("COSTLINE_TIMEZONE", "Mars/Olympus")
    for controls in (True, False):
        with pytest.raises(ConfigError, match="COSTLINE_TIMEZONE 'Mars/Olympus'") as info:
            Router(controls=controls)
        assert info.value.field == "COSTLINE_TIMEZONE"
    home.mkdir(exist_ok=True)
    assert cli.main(["doctor"]) == 1
    out = capsys.readouterr().out
    assert "settings     COSTLINE_TIMEZONE 'Mars/Olympus' is not an IANA time zone" in out, out
    monkeypatch.setenv("COSTLINE_TIMEZONE", "Europe/Paris")
    Router(controls=False).close()
    assert cli.main(["doctor"]) == 0
    assert "settings     ok (time zone Europe/Paris)" in capsys.readouterr().out
