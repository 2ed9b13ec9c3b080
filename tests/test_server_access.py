"""Who may use the server: the token, and HTTPS/WSS with a certificate (loopback TCP only)."""

from __future__ import annotations

import asyncio
import datetime
import json
import ssl

import pytest
import websockets
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from server.app import ServerConfig, run_server


def self_signed(tmp_path) -> tuple[str, str]:
    """A throwaway certificate for 127.0.0.1, as README's openssl line makes."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return str(cert_path), str(key_path)


async def start(cfg: ServerConfig):
    started = asyncio.Event()
    urls: list[str] = []
    task = asyncio.create_task(run_server(cfg, ready=lambda u: (urls.append(u), started.set())))
    await asyncio.wait_for(started.wait(), 120)
    return task, urls[0]


async def stop(task) -> None:
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_token_is_required(tmp_path, monkeypatch, free_port) -> None:
    monkeypatch.setenv("VN3D_CACHE", str(tmp_path / "cache"))
    port = free_port
    task, _ = await start(ServerConfig(port=port, token="s3cret", size=64))
    try:
        for path in ("/ws", "/ws?token=wrong"):
            async with websockets.connect(f"ws://127.0.0.1:{port}{path}") as ws:
                assert json.loads(await ws.recv())["code"] == "unauthorized"
                with pytest.raises(websockets.ConnectionClosed):
                    await ws.recv()
        async with websockets.connect(f"ws://127.0.0.1:{port}/ws?token=s3cret") as ws:
            assert json.loads(await ws.recv())["type"] == "welcome"
    finally:
        await stop(task)


async def test_https_and_wss_with_a_certificate(tmp_path, monkeypatch, free_port) -> None:
    monkeypatch.setenv("VN3D_CACHE", str(tmp_path / "cache"))
    cert, key = self_signed(tmp_path)
    port = free_port
    task, url = await start(ServerConfig(port=port, cert=cert, key=key, size=64))
    try:
        assert url.startswith("https://")
        client = ssl.create_default_context(cafile=cert)
        client.check_hostname = False
        async with websockets.connect(f"wss://127.0.0.1:{port}/ws", ssl=client) as ws:
            assert json.loads(await ws.recv())["type"] == "welcome"
        with pytest.raises((ConnectionError, websockets.InvalidMessage, OSError)):
            async with websockets.connect(f"ws://127.0.0.1:{port}/ws", open_timeout=5) as ws:
                await ws.recv()
    finally:
        await stop(task)
