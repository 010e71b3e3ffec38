"""deploy/newsmon.service: ``systemd-analyze verify`` passes and ``security`` rates it OK.

Needs ``systemd-analyze`` (Debian: ``apt-get install -y systemd``); skipped without it.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.helpers.paths import REPO

UNIT = REPO / "deploy" / "newsmon.service"
EXEC = "/opt/newsmon/venv/bin/newsmon"

analyze = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(
    analyze is None, reason="systemd-analyze is not installed (apt-get install -y systemd)")


def directives(text: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.lstrip().startswith(("#", ";", "[")):
            key, value = line.split("=", 1)
            found.setdefault(key.strip(), []).append(value.strip())
    return found


def test_the_unit_runs_newsmon_as_a_notify_service_with_its_own_directories() -> None:
    unit = directives(UNIT.read_text(encoding="utf-8"))
    assert unit["Type"] == ["notify"]
    assert unit["ExecStart"] == [f"{EXEC} run --config /etc/newsmon/newsmon.yaml"]
    assert unit["Restart"] == ["on-failure"]
    assert unit["WatchdogSec"] and unit["DynamicUser"] == ["yes"]
    assert unit["StateDirectory"] == ["newsmon"] and unit["ConfigurationDirectory"] == ["newsmon"]
    assert unit["EnvironmentFile"] == ["-/etc/newsmon/newsmon.env"]
    for key in ("ProtectSystem", "ProtectHome", "PrivateTmp", "NoNewPrivileges",
                "RestrictAddressFamilies", "SystemCallFilter", "MemoryMax"):
        assert key in unit, key


# --- deploy/newsmon-web.service: the workspace beside the daemon -----------------------------

WEB_UNIT = REPO / "deploy" / "newsmon-web.service"
HARDENING = ("CapabilityBoundingSet", "NoNewPrivileges", "ProtectSystem", "ProtectHome", "PrivateTmp",
             "PrivateDevices", "PrivateUsers", "ProtectKernelTunables", "ProtectKernelModules",
             "ProtectControlGroups", "ProtectProc", "RestrictAddressFamilies", "RestrictNamespaces",
             "LockPersonality", "SystemCallFilter", "SystemCallArchitectures", "UMask")


def test_the_web_unit_serves_loopback_with_the_daemons_user_and_hardening() -> None:
    web = directives(WEB_UNIT.read_text(encoding="utf-8"))
    daemon = directives(UNIT.read_text(encoding="utf-8"))
    assert web["ExecStart"] == [f"{EXEC} web --config /etc/newsmon/newsmon.yaml --host 127.0.0.1 --port 8780"]
    # The same dynamic user name as the daemon (its unit name): the same UID, the same state.
    assert web["DynamicUser"] == ["yes"] and web["User"] == ["newsmon"]
    assert web["StateDirectory"] == daemon["StateDirectory"]
    assert web["RestartPreventExitStatus"] == ["2"]
    assert "-/etc/newsmon/newsmon-web.env" in web["EnvironmentFile"]
    for key in HARDENING:
        assert web.get(key) == daemon.get(key), key
    assert web["MemoryMax"]


def test_the_proxy_example_terminates_tls_and_keeps_feed_keys_out_of_its_log() -> None:
    conf = (REPO / "deploy" / "nginx-newsmon-web.conf").read_text(encoding="utf-8")
    assert "listen 443 ssl" in conf and "ssl_certificate " in conf and "return 301 https://" in conf
    assert "proxy_pass http://newsmon_web" in conf and "server 127.0.0.1:8780" in conf
    assert "proxy_set_header X-Forwarded-Proto $scheme" in conf
    log_format = conf.split("log_format newsmon_noquery", 1)[1].split(";", 1)[0]
    assert "$uri" in log_format and "$request_uri" not in log_format and '"$request"' not in log_format
    assert "access_log /var/log/nginx/newsmon-web.access.log newsmon_noquery;" in conf


# The scale-out units (docs/scale-out.md): the daemon's hardening, their own commands.
SCALE_OUT = {"newsmon-poller.service": "poller", "newsmon-worker@.service": "worker",
             "newsmon-deliver.service": "deliver"}


@pytest.mark.parametrize("name", sorted(SCALE_OUT))
def test_the_scale_out_units_run_their_command_with_the_daemons_hardening(name: str) -> None:
    unit = directives((REPO / "deploy" / name).read_text(encoding="utf-8"))
    daemon = directives(UNIT.read_text(encoding="utf-8"))
    assert unit["ExecStart"] == [f"{EXEC} {SCALE_OUT[name]} --config /etc/newsmon/newsmon.yaml"]
    assert unit["Type"] == ["notify"] and unit["WatchdogSec"]
    assert unit["Restart"] == ["on-failure"] and unit["RestartPreventExitStatus"] == ["2"]
    assert unit["DynamicUser"] == ["yes"] and unit["EnvironmentFile"] == daemon["EnvironmentFile"]
    for key in HARDENING:
        assert unit.get(key) == daemon.get(key), key
    assert unit["MemoryMax"]


# --- systemd-analyze on every unit ------------------------------------------------------------

UNITS = ("newsmon.service", "newsmon-web.service", *sorted(SCALE_OUT))


@needs_analyze
@pytest.mark.parametrize("name", UNITS)
def test_systemd_analyze_verify_passes(tmp_path: Path, name: str) -> None:
    # verify checks that ExecStart exists: stand a stub in for the installed venv,
    # changing nothing else in the unit.
    stub = tmp_path / "bin" / "newsmon"
    stub.parent.mkdir()
    stub.write_text("#!/bin/sh\n")
    stub.chmod(0o755)
    instance = name.replace("@.", "@1.")  # a template is verified as an instance
    unit = tmp_path / instance
    text = (REPO / "deploy" / name).read_text(encoding="utf-8")
    assert EXEC in text
    unit.write_text(text.replace(EXEC, str(stub)), encoding="utf-8")
    result = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    problems = [line for line in (result.stdout + result.stderr).splitlines() if instance in line]
    assert result.returncode == 0 and not problems, result.stdout + result.stderr


@needs_analyze
@pytest.mark.parametrize("name", UNITS)
def test_systemd_analyze_security_rates_it_ok(name: str) -> None:
    result = subprocess.run([analyze, "security", "--offline=yes", "--no-pager",
                             str(REPO / "deploy" / name)], capture_output=True, text=True, timeout=60)
    match = re.search(r"Overall exposure level for [\w@.-]+: ([\d.]+) (\w+)", result.stdout)
    assert match, result.stdout + result.stderr
    assert float(match.group(1)) <= 2.0 and match.group(2) == "OK", match.group(0)
