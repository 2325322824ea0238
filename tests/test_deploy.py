"""deploy/: Debian's nginx with deploy/nginx/notiflow.conf terminates TLS in front of
`notiflow api` and `notiflow realtime`, and an Echo front end works through it unchanged."""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import shutil
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.conftest import TEST_PUSHER_APP_ID, TEST_PUSHER_KEY, TEST_PUSHER_SECRET
from tests.delivery.processes import NotiflowProcess, eventually, free_port, scale_out_env
from tests.fault_servers import OwnRedis
from tests.realtime.node import NodeClient

pytestmark = pytest.mark.slow

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
APP = (TEST_PUSHER_APP_ID, TEST_PUSHER_KEY, TEST_PUSHER_SECRET)


def _certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (trusted by the clients of this test only)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "notiflow test")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def _site(folder: Path, ports: dict[str, int], cert: Path, key: Path) -> Path:
    """deploy/nginx/notiflow.conf with this test's ports and certificate (each edit must
    apply: a changed file fails here rather than testing something else)."""
    text = (DEPLOY / "nginx" / "notiflow.conf").read_text()
    edits = {
        "    listen 80;\n": f"    listen 127.0.0.1:{ports['http']};\n",
        "    listen [::]:80;\n": "",
        "    listen 443 ssl http2;\n": f"    listen 127.0.0.1:{ports['https']} ssl http2;\n",
        "    listen [::]:443 ssl http2;\n": "",
        "/etc/ssl/certs/notify.example.com.pem": str(cert),
        "/etc/ssl/private/notify.example.com.key": str(key),
        "server 127.0.0.1:8000;": f"server 127.0.0.1:{ports['api']};",
        "server 127.0.0.1:6001;": f"server 127.0.0.1:{ports['ws']};",
    }
    for old, new in edits.items():
        assert old in text, f"deploy/nginx/notiflow.conf no longer has {old!r}"
        text = text.replace(old, new)
    site = folder / "notiflow.conf"
    site.write_text(text)
    return site


@pytest.fixture
def nginx(tmp_path: Path) -> Iterator[tuple[dict[str, int], Path]]:
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    assert Path(binary).exists(), (
        "nginx is not installed (Debian package nginx; .ci/run installs it)"
    )
    ports = {name: free_port() for name in ("http", "https", "api", "ws")}
    cert, key = _certificate(tmp_path)
    site = _site(tmp_path, ports, cert, key)
    temp = tmp_path / "nginx-temp"
    temp.mkdir()
    main = tmp_path / "nginx.conf"
    main.write_text(
        ("user root;\n" if os.geteuid() == 0 else "")
        + f"worker_processes 1;\npid {tmp_path / 'nginx.pid'};\n"
        + f"error_log {tmp_path / 'error.log'} warn;\n"
        + "events {}\n"
        + "http {\n    access_log off;\n"
        + "".join(
            f"    {kind}_temp_path {temp / kind};\n"
            for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        + f"    include {site};\n}}\n"
    )
    checked = subprocess.run(  # noqa: S603 - Debian's nginx, our config
        [binary, "-t", "-p", str(tmp_path), "-c", str(main)], capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stderr
    process = subprocess.Popen(  # noqa: S603
        [binary, "-p", str(tmp_path), "-c", str(main), "-g", "daemon off;"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield ports, cert
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture
async def redis() -> AsyncIterator[OwnRedis]:
    own = OwnRedis().start()
    try:
        yield own
    finally:
        own.stop()


async def test_echo_works_through_nginx_terminating_tls(
    tmp_path: Path,
    nginx: tuple[dict[str, int], Path],
    redis: OwnRedis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ports, cert = nginx
    public = f"https://127.0.0.1:{ports['https']}"
    env = scale_out_env(
        tmp_path,
        redis.url,
        ports["api"],
        APP,
        public_url=public,
        ws_public_host="127.0.0.1",
        ws_public_port=str(ports["https"]),
    )
    api = NotiflowProcess(
        ["api", "--port", str(ports["api"])], env, f"http://127.0.0.1:{ports['api']}/health"
    )
    realtime = NotiflowProcess(["realtime", "--port", str(ports["ws"])], env)
    try:
        await api.start()
        await realtime.start(settle=0.5)
        created = api.run(
            "users", "create", "--tenant", "Acme", "--email", "o@x.io", "--role", "owner",
            "--with-token",
        )  # fmt: skip
        assert created.returncode == 0, created.stderr
        user = json.loads(created.stdout)
        headers = {"Authorization": f"Bearer {user['token']}"}

        async with httpx.AsyncClient(
            base_url=public, verify=ssl.create_default_context(cafile=cert), headers=headers
        ) as client:
            # What a front end is told, fetched through the proxy, points back at it.
            config = (await client.get("/api/v1/realtime/config")).json()["data"]
            echo_options = config["echo"]
            assert echo_options["authEndpoint"] == f"{public}/broadcasting/auth"
            assert echo_options["forceTLS"] is True
            assert echo_options["wssPort"] == ports["https"]

            # Node trusts the test's certificate, as a browser would trust a real one.
            monkeypatch.setenv("NODE_EXTRA_CA_CERTS", str(cert))
            browser_config = {
                "mode": "echo",
                "key": echo_options["key"],
                "wsHost": echo_options["wsHost"],
                "wsPort": echo_options["wsPort"],
                "authEndpoint": echo_options["authEndpoint"],
                "token": user["token"],
                "options": {
                    "forceTLS": True,
                    "wssPort": echo_options["wssPort"],
                    "enabledTransports": echo_options["enabledTransports"],
                },
                "subscribe": [
                    {
                        "kind": "private",
                        "name": config["channel"].removeprefix("private-"),
                        "listen": [".NotificationCreated"],
                    }
                ],
            }
            async with NodeClient(browser_config) as browser:
                await browser.connected(timeout=30)
                await browser.wait_for(
                    {"type": "subscribed", "channel": config["channel"]}, timeout=30
                )
                sent = await client.post(
                    "/api/v1/notifications/send",
                    json={
                        "user_ids": [user["user_id"]],
                        "type": "system_announcement",
                        "title": "Through nginx",
                        "message": "TLS ends at the proxy.",
                    },
                )
                assert sent.status_code == 202, sent.text
                event = await browser.wait_for(
                    {"type": "event", "event": "NotificationCreated"}, timeout=30
                )
                assert "Through nginx" in json.dumps(event)

        # Plain HTTP is sent to HTTPS.
        async with httpx.AsyncClient() as plain:
            redirect = await plain.get(f"http://127.0.0.1:{ports['http']}/health")
        assert redirect.status_code == 301
        assert redirect.headers["location"].startswith("https://")

        async def healthy_through_proxy() -> bool:
            async with httpx.AsyncClient(verify=ssl.create_default_context(cafile=cert)) as secure:
                return (await secure.get(f"{public}/health")).status_code == 200

        await eventually(healthy_through_proxy, timeout=30)
    finally:
        realtime.stop()
        api.stop()


@pytest.mark.parametrize(
    "unit", sorted((DEPLOY / "systemd").glob("*.service")), ids=lambda p: p.name
)
def test_each_systemd_unit_runs_a_real_command(unit: Path) -> None:
    """The command line of each unit is one notiflow accepts (its options exist)."""
    [exec_start] = [
        line.partition("=")[2] for line in unit.read_text().splitlines()
        if line.startswith("ExecStart=")
    ]  # fmt: skip
    program, *arguments = exec_start.replace("%i", "6001").split()
    assert program == "/opt/notiflow/.venv/bin/notiflow"
    notiflow = str(Path(sys.executable).with_name("notiflow"))
    command, options = arguments[0], arguments[1:]
    shown = subprocess.run(  # noqa: S603 - our own console script
        [notiflow, command, "--help"], capture_output=True, text=True, check=False
    )
    assert shown.returncode == 0, shown.stderr
    for option in options:
        if option.startswith("--"):
            assert option in shown.stdout, f"{unit.name}: notiflow {command} has no {option}"
