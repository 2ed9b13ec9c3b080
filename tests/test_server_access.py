"""Who may use the server: the token, and HTTPS/WSS with a certificate (loopback TCP only)."""

from __future__ import annotations

import asyncio
import datetime
import gc
import json
import ssl
from concurrent.futures import ThreadPoolExecutor

import pytest
import websockets
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from server.app import run_server
from server.config import ServerConfig


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


async def test_token_is_required(tmp_path, monkeypatch, free_port, seed_cache) -> None:
    monkeypatch.setenv("VN3D_CACHE", str(seed_cache(tmp_path / "cache")))
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


async def test_https_and_wss_with_a_certificate(tmp_path, monkeypatch, free_port,
                                              seed_cache) -> None:
    monkeypatch.setenv("VN3D_CACHE", str(seed_cache(tmp_path / "cache")))
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


ALICE, BOB = "alice-0123456789abcdef", "bob-0123456789abcdef0"  # page-style user keys


async def upload(ws, data: bytes, name: str = "me", public: bool = False) -> dict:
    """Send a portrait in pieces as the page does; return the build's reply."""
    import base64
    import hashlib

    await ws.send(json.dumps({"type": "avatar_begin", "bytes": len(data), "name": name,
                              "public": public}))
    assert json.loads(await ws.recv())["ok"] is True
    for seq, i in enumerate(range(0, len(data), 32 * 1024)):
        chunk = base64.b64encode(data[i : i + 32 * 1024]).decode()
        await ws.send(json.dumps({"type": "avatar_chunk", "seq": seq, "data": chunk}))
        assert json.loads(await ws.recv())["type"] == "avatar_chunk"
    await ws.send(json.dumps({"type": "avatar_end", "sha256": hashlib.sha256(data).hexdigest()}))
    while True:  # stats may arrive in between
        reply = json.loads(await asyncio.wait_for(ws.recv(), 180))
        if reply["type"] in ("avatar", "error"):
            return reply


async def http_get(port: int, path: str) -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split()[1])
    length = int(next((ln.split(b":")[1] for ln in head.split(b"\r\n")
                       if ln.lower().startswith(b"content-length")), b"0"))
    body = await reader.readexactly(length)
    writer.close()
    return status, body


async def test_make_my_avatar_upload_is_private_to_its_user(tmp_path, free_port) -> None:
    """A portrait uploaded over the socket becomes an avatar: listed to its uploader only,
    downloadable by them as zip and GLB, choosable as a target; a bad photo gets a clear
    error and the socket keeps serving."""
    from engines.files.assets import asset_root

    photo = (asset_root() / "faces" / "london_set" / "london_005_neutral.jpg").read_bytes()
    cfg = ServerConfig(port=free_port, token="s3cret", avatar_store=str(tmp_path / "store"))
    task, _ = await start(cfg)
    base = f"ws://127.0.0.1:{free_port}/ws?token=s3cret"
    try:
        async with websockets.connect(base + f"&user={ALICE}", max_size=2**24) as alice:
            welcome = json.loads(await alice.recv())
            assert [t["id"] for t in welcome["targets"]] == ["default"]
            await alice.send(json.dumps({"type": "avatar_begin", "bytes": 10**9}))
            assert json.loads(await alice.recv())["code"] == "too_large"
            bad = await upload(alice, b"this is not a photo at all")
            assert bad["type"] == "error" and bad["code"] == "bad_photo"
            made = await upload(alice, photo, name="alice")
            assert made["type"] == "avatar", made
            avatar_id = made["id"]
            assert avatar_id in [t["id"] for t in made["targets"]]
            await alice.send(json.dumps({"type": "target", "id": avatar_id}))
            while (reply := json.loads(await alice.recv()))["type"] == "stats":
                pass
            assert reply == {"type": "target", "id": avatar_id, "ok": True}
        status, body = await http_get(free_port, made["zip"])
        assert status == 200 and body[:2] == b"PK"
        status, body = await http_get(free_port, made["glb"])
        assert status == 200 and body[:4] == b"glTF"
        # another user neither sees it, nor may choose or download it
        async with websockets.connect(base + f"&user={BOB}") as bob:
            welcome = json.loads(await bob.recv())
            assert avatar_id not in [t["id"] for t in welcome["targets"]]
            await bob.send(json.dumps({"type": "target", "id": avatar_id}))
            assert json.loads(await bob.recv())["code"] == "unknown_target"
        status, _ = await http_get(free_port, f"/avatars/{avatar_id}.zip?user={BOB}&token=s3cret")
        assert status == 404
        status, _ = await http_get(free_port, f"/avatars/{avatar_id}.zip?user={ALICE}")
        assert status == 401  # no token
        escape = f"/avatars/..%2f..%2fetc.zip?user={ALICE}&token=s3cret"
        status, _ = await http_get(free_port, escape)
        assert status == 404
    finally:
        await stop(task)


def fetch(url: str) -> tuple[int, bytes]:
    import urllib.request

    with urllib.request.urlopen(url, timeout=60) as r:
        return r.status, r.read()


async def test_parallel_downloads_do_not_stall_signalling(tmp_path, free_port, ict,
                                                          probe_avatar) -> None:
    """40 zip downloads at once (each zip made on first use, then read from disk) run off
    the event loop: a signalling round trip during them stays short (it took seconds
    when zips were built on the loop)."""
    import dataclasses

    import numpy as np

    from avatars.store import AvatarStore

    noise = np.random.default_rng(0).integers(0, 256, (1024, 2048, 3), np.uint8)
    big = dataclasses.replace(probe_avatar, texture=noise)  # a real avatar's size: ~6 MB PNG
    avatar_id = AvatarStore(tmp_path / "store").add(big, ict)  # everyone's
    task, _ = await start(ServerConfig(port=free_port, avatar_store=str(tmp_path / "store"),
                                       sample_gallery=False, downloads_per_minute=100))
    try:
        async with websockets.connect(f"ws://127.0.0.1:{free_port}/ws") as ws:
            await ws.recv()  # welcome
            # the downloads read on threads: this event loop is the server's too, and
            # only the server's work on it is measured
            pool = ThreadPoolExecutor(8)
            url = f"http://127.0.0.1:{free_port}/avatars/{avatar_id}.zip"
            loop = asyncio.get_running_loop()
            downloads = [loop.run_in_executor(pool, fetch, url) for _ in range(40)]
            pings = []
            while not all(d.done() for d in downloads) or len(pings) < 5:
                t0 = asyncio.get_running_loop().time()
                await ws.send(json.dumps({"type": "ping"}))
                while json.loads(await ws.recv())["type"] != "pong":
                    pass
                pings.append(asyncio.get_running_loop().time() - t0)
                await asyncio.sleep(0.02)
            results = await asyncio.gather(*downloads)
        print(f"longest round trip {max(pings):.3f} s over {len(pings)}")
        assert max(pings) < 0.2, pings  # the bar: signalling stays responsive
        assert all(status == 200 and body[:2] == b"PK" for status, body in results)
        assert len({body for _, body in results}) == 1  # made once, the same bytes every time
        pool.shutdown()
    finally:
        await stop(task)


async def test_silent_sockets_are_closed_and_sockets_are_bounded(tmp_path, free_port) -> None:
    """Lock-out: sockets hold no call slot (that is taken at the offer), one address may
    hold only so many, and a socket that sends nothing is closed; one that keeps talking
    (the page pings) stays."""
    cfg = ServerConfig(port=free_port, max_sessions=1, max_sockets_per_ip=2,
                       idle_timeout_s=0.6, sample_gallery=False,
                       avatar_store=str(tmp_path / "store"))
    task, _ = await start(cfg)
    url = f"ws://127.0.0.1:{free_port}/ws"
    assert gc.get_freeze_count() > 10_000  # its start-up heap is out of the collector's sight

    async def pings(ws, n: int) -> None:
        for _ in range(n):
            await ws.send(json.dumps({"type": "ping"}))
            assert json.loads(await ws.recv()) == {"type": "pong"}
            await asyncio.sleep(0.2)

    try:
        async with websockets.connect(url) as squatter, websockets.connect(url) as page:
            assert json.loads(await squatter.recv())["type"] == "welcome"
            assert json.loads(await page.recv())["type"] == "welcome"  # max_sessions=1: no slot
            async with websockets.connect(url) as third:  # a third from this address
                refusal = json.loads(await third.recv())
                assert refusal["code"] == "too_many_connections", refusal
                with pytest.raises(websockets.ConnectionClosed) as closed:
                    await asyncio.wait_for(third.recv(), 10)
                assert closed.value.rcvd.code == 1013
            await pings(page, 8)  # 1.6 s, more than the idle timeout
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await asyncio.wait_for(squatter.recv(), 10)
            assert closed.value.rcvd.code == 4000 and closed.value.rcvd.reason == "idle"
            async with websockets.connect(url) as again:  # the squatter's socket is free
                assert json.loads(await again.recv())["type"] == "welcome"
                await pings(page, 1)
    finally:
        await stop(task)
