"""The `clusterpedia` command as a user runs it: help, version, and where each setting comes from."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from cli.main import main

ROOT = Path(__file__).resolve().parents[2]
CONSOLE_SCRIPT = Path(sys.executable).parent / "clusterpedia"


def run_cli(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m cli`` in a child with a clean CLUSTERPEDIA_* environment."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("CLUSTERPEDIA_")}
    return subprocess.run(
        [sys.executable, "-m", "cli", *args],
        env={**base, **(env or {})},
        cwd=cwd or ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("command", "expected_flags"),
    [
        ("apiserver", ["--port", "--bind-host", "--tls-cert-file", "--storage", "--authorize"]),
        ("synchro", ["--kubeconfig", "--queue", "--worker-id", "--lease-duration-seconds", "--metrics-port"]),
        ("writer", ["--storage", "--queue", "--batch-max-events", "--consumer-name", "--log-format"]),
        ("all-in-one", ["--writers", "--port", "--batch-max-events", "--worker-id", "--kubeconfig"]),
        ("config", ["--show-secrets", "--config", "--set", "--reference"]),
        ("migrate", ["--storage", "--config"]),
        ("kube-state-metrics", ["--storage", "--port", "--bearer-token-file", "--refresh-interval-seconds"]),
    ],
)
def test_each_subcommand_has_help_with_its_flags(command: str, expected_flags: list[str]) -> None:
    result = run_cli(command, "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"usage: clusterpedia {command}")
    for flag in expected_flags:
        assert flag in result.stdout
    # Every flag names the environment variable that sets the same thing.
    assert "CLUSTERPEDIA_" in result.stdout


def test_console_script_lists_the_subcommands() -> None:
    result = subprocess.run(
        [str(CONSOLE_SCRIPT), "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    for command in ("apiserver", "synchro", "writer", "all-in-one", "migrate", "config", "version"):
        assert command in result.stdout


def test_version() -> None:
    result = run_cli("version")
    assert result.returncode == 0
    assert result.stdout.startswith("clusterpedia 0.")
    assert run_cli("--version").stdout == result.stdout


def test_no_subcommand_is_a_usage_error() -> None:
    result = run_cli()
    assert result.returncode == 2
    assert "usage: clusterpedia" in result.stderr


def test_config_prints_the_embedded_defaults(tmp_path: Path) -> None:
    result = run_cli("config", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    cfg = yaml.safe_load(result.stdout)
    assert cfg["storage"] == "sqlite:///clusterpedia.db"
    assert cfg["queue"] == "memory://"
    assert cfg["apiserver"]["port"] == 8443
    assert cfg["writer"]["batch_max_events"] == 1000
    assert cfg["apiserver"]["collections"]["workloads"] == [
        "deployments.apps",
        "daemonsets.apps",
        "statefulsets.apps",
    ]


def test_config_precedence_flag_over_env_over_file(tmp_path: Path) -> None:
    config = tmp_path / "clusterpedia.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "storage": "sqlite:///from-file.db",
                "queue": "redis://127.0.0.1:1/0",
                "log_format": "text",
                "writer": {"batch_max_events": 11, "batch_max_wait_seconds": 0.5},
                "apiserver": {"port": 9001},
            }
        )
    )
    env = {
        "CLUSTERPEDIA_QUEUE": "redis://127.0.0.1:2/0",
        "CLUSTERPEDIA_WRITER__BATCH_MAX_EVENTS": "22",
        "CLUSTERPEDIA_APISERVER__PORT": "9002",
    }
    result = run_cli("config", "--config", str(config), "--port", "9003", env=env)
    assert result.returncode == 0, result.stderr
    cfg = yaml.safe_load(result.stdout)
    assert cfg["storage"] == "sqlite:///from-file.db"  # file only
    assert cfg["log_format"] == "text"  # file only
    assert cfg["queue"] == "redis://127.0.0.1:2/0"  # env beats file
    assert cfg["writer"]["batch_max_events"] == 22  # env beats file
    assert cfg["writer"]["batch_max_wait_seconds"] == 0.5  # file, sibling of an env-set field
    assert cfg["apiserver"]["port"] == 9003  # flag beats env and file

    # The config file can also come from the environment.
    result = run_cli("config", env={**env, "CLUSTERPEDIA_CONFIG": str(config)})
    cfg = yaml.safe_load(result.stdout)
    assert cfg["storage"] == "sqlite:///from-file.db"
    assert cfg["apiserver"]["port"] == 9002


def test_set_reaches_any_setting_and_flags_win_over_it(tmp_path: Path) -> None:
    result = run_cli(
        "config",
        "--set",
        "apiserver.collections={apps: [deployments.apps]}",
        "--set",
        "writer.batch_max_events=5",
        "--batch-max-events",
        "6",
        "--set",
        "synchro.strip_last_applied=false",
    )
    assert result.returncode == 0, result.stderr
    cfg = yaml.safe_load(result.stdout)
    assert cfg["apiserver"]["collections"] == {"apps": ["deployments.apps"]}
    assert cfg["writer"]["batch_max_events"] == 6
    assert cfg["synchro"]["strip_last_applied"] is False


def test_boolean_flags_turn_on_and_off() -> None:
    on = yaml.safe_load(run_cli("config", "--authorize").stdout)
    off = yaml.safe_load(
        run_cli("config", "--no-authorize", env={"CLUSTERPEDIA_APISERVER__AUTHORIZE": "true"}).stdout
    )
    assert on["apiserver"]["authorize"] is True
    assert off["apiserver"]["authorize"] is False


def test_config_masks_passwords_unless_asked(tmp_path: Path) -> None:
    args = [
        "config",
        "--storage",
        "postgresql://clusterpedia:s3cret@db.example:5432/clusterpedia",
        "--queue",
        "redis://:hunter2@redis:6379/0",
    ]
    masked = run_cli(*args)
    assert masked.returncode == 0, masked.stderr
    assert "s3cret" not in masked.stdout and "hunter2" not in masked.stdout
    cfg = yaml.safe_load(masked.stdout)
    assert cfg["storage"] == "postgresql://clusterpedia:***@db.example:5432/clusterpedia"
    assert cfg["queue"] == "redis://:***@redis:6379/0"
    shown = yaml.safe_load(run_cli(*args, "--show-secrets").stdout)
    assert shown["storage"] == "postgresql://clusterpedia:s3cret@db.example:5432/clusterpedia"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["config", "--port", "eighty"], "invalid int value"),
        (["config", "--set", "writer.no_such_field=1"], "expected KEY=VALUE"),
        (["config", "--set", "writer.batch_max_events=lots"], "invalid configuration"),
        (["writer", "--log-format", "xml"], "log_format must be json or text"),
        (
            ["all-in-one", "--storage", "memory://", "--queue", "redis://127.0.0.1:1/0"],
            "--storage memory:// keeps the objects inside one process",
        ),
        # the kube-state-metrics tier reads only the store: flags it would ignore are not offered
        (["kube-state-metrics", "--queue", "redis://127.0.0.1:1/0"], "unrecognized arguments: --queue"),
        (["kube-state-metrics", "--metrics-port", "9999"], "unrecognized arguments: --metrics-port"),
    ],
)
def test_bad_configuration_is_a_clear_usage_error(args: list[str], message: str) -> None:
    result = run_cli(*args)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_config_file_is_a_clear_error(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("- just\n- a list\n")
    result = run_cli("config", "--config", str(config))
    assert result.returncode == 2
    assert "must hold a mapping" in result.stderr
    result = run_cli("config", "--config", str(tmp_path / "missing.yaml"))
    assert result.returncode == 2
    assert "missing.yaml" in result.stderr


def test_main_in_process_prints_config(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for key in [k for k in os.environ if k.startswith("CLUSTERPEDIA_")]:
        monkeypatch.delenv(key)
    assert main(["config", "--storage", "mysql://u:p@h/db"]) == 0
    cfg = yaml.safe_load(capsys.readouterr().out)
    assert cfg["storage"] == "mysql://u:***@h/db"


def test_migrate_creates_the_store_tables(tmp_path: Path) -> None:
    db = tmp_path / "store.db"
    for _ in range(2):  # idempotent
        result = run_cli("migrate", f"--storage=sqlite:///{db}", "--log-format=text")
        assert result.returncode == 0, result.stderr
        assert "store schema is up to date" in result.stderr
    with sqlite3.connect(db) as conn:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"resources", "resource_types", "schema_version"} <= tables
