"""The embedded Redis the hub supervises, and the demo `make run` starts."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp
from redis.asyncio import Redis

from adapters.redis_server import EmbeddedRedis, free_port
from tests.helpers import eventually

ROOT = Path(__file__).resolve().parent.parent


async def test_embedded_redis_keeps_data_across_restarts_and_survives_a_crash(
    tmp_path: Path,
) -> None:
    """AOF is on, data persists in data_dir across a restart, and a killed server comes back."""
    server = EmbeddedRedis(tmp_path)
    await server.start()
    client = Redis.from_url(server.url, decode_responses=True)
    try:
        assert (await client.config_get("appendonly"))["appendonly"] == "yes"
        assert (await client.config_get("dir"))["dir"] == str(tmp_path / "redis")
        await client.set("ticket", "KMN-2026-000001")
        assert server._proc is not None
        old_pid = server._proc.pid
        os.kill(old_pid, signal.SIGKILL)  # the supervisor must bring it back

        async def back() -> bool:
            proc = server._proc
            if proc is None or proc.pid == old_pid:
                return False
            try:
                return bool(await client.ping())
            except Exception:
                return False

        await eventually(back, limit_s=15)
    finally:
        await client.aclose()
        await server.stop()
    assert server._proc is not None
    assert server._proc.returncode is not None

    again = EmbeddedRedis(tmp_path)
    await again.start()
    client = Redis.from_url(again.url, decode_responses=True)
    try:
        # everysec fsync: the key written a second before the kill may or may not survive a
        # SIGKILL, so write one more and check it survives a clean stop/start.
        await client.set("after", "1")
    finally:
        await client.aclose()
        await again.stop()
    third = EmbeddedRedis(tmp_path)
    await third.start()
    client = Redis.from_url(third.url, decode_responses=True)
    try:
        assert await client.get("after") == "1"
    finally:
        await client.aclose()
        await third.stop()


async def test_demo_forms_tickets_and_acknowledges_then_stops_cleanly(tmp_path: Path) -> None:
    """`python -m hub run --demo` (what `make run` starts) shows tickets and acks within
    seconds, and SIGTERM stops the hub and its embedded Redis."""
    port, fake_port, portal_port = free_port(), free_port(), free_port()
    graph_port, bot_port = free_port(), free_port()
    graph_url, bot_url = f"http://127.0.0.1:{graph_port}", f"http://127.0.0.1:{bot_port}"
    env = {
        **os.environ,
        "HUB__HUB__LISTEN_PORT": str(port),
        "HUB__HUB__PUBLIC_URL": f"http://127.0.0.1:{port}",
        "HUB__HUB__DATA_DIR": str(tmp_path),
        "HUB__HUB__LOG_FORMAT": "json",
        "HUB__DEMO__FAKE_TWILIO_PORT": str(fake_port),
        "HUB__CHANNELS__WHATSAPP__ACCOUNTS__WA1__API_BASE_URL": f"http://127.0.0.1:{fake_port}",
        "HUB__CHANNELS__WHATSAPP__ACCOUNTS__WA2__API_BASE_URL": f"http://127.0.0.1:{fake_port}",
        "HUB__DEMO__FAKE_PORTAL_PORT": str(portal_port),
        "HUB__CHANNELS__PORTAL__ACCOUNTS__BANTUAN__API_BASE_URL": f"http://127.0.0.1:{portal_port}",
        "HUB__DEMO__FAKE_GRAPH_PORT": str(graph_port),
        "HUB__DEMO__FAKE_TELEGRAM_PORT": str(bot_port),
        "HUB__CHANNELS__WHATSAPP__ACCOUNTS__CLOUD__API_BASE_URL": graph_url,
        "HUB__CHANNELS__INSTAGRAM__ACCOUNTS__PPID__API_BASE_URL": graph_url,
        "HUB__CHANNELS__TELEGRAM__ACCOUNTS__KEMNAKER__API_BASE_URL": bot_url,
        "HUB__ALERTS__TELEGRAM__API_BASE_URL": bot_url,
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "hub",
        "run",
        "--config",
        "config/demo.toml",
        "--demo",
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    token = "demo-token-0123456789abcdef"
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as s:

            async def acks_read() -> list[dict] | None:
                try:
                    async with s.get(base + "/api/v1/tickets") as r:
                        if r.status != 200:
                            return None
                        items = (await r.json())["items"]
                except aiohttp.ClientError:
                    return None
                if len(items) < 7:  # 5 on WhatsApp, one on Telegram, one on Instagram
                    return None
                for t in items:
                    if t["channel"] != "whatsapp":
                        continue
                    async with s.get(f"{base}/api/v1/tickets/{t['id']}") as r:
                        full = await r.json()
                    outs = [m for m in full["messages"] if m["direction"] == "out"]
                    if not outs or outs[0]["state"] != "read":
                        return None
                return items

            items = await eventually(acks_read, limit_s=30, every_s=0.2)
            assert (
                sorted(t["channel"] for t in items) == ["instagram", "telegram"] + ["whatsapp"] * 5
            )

            async def portal_joined() -> list[str] | None:
                """The fake portal's request joins a WhatsApp citizen's ticket (no 6th ticket)."""
                for t in items:
                    async with s.get(f"{base}/api/v1/tickets/{t['id']}") as r:
                        full = await r.json()
                    inbound = [m["channel"] for m in full["messages"] if m["direction"] == "in"]
                    accounts = {m["account"] for m in full["messages"] if m["direction"] == "in"}
                    if inbound.count("portal") == 2 and "cloud" in accounts:
                        return inbound
                return None

            inbound = await eventually(portal_joined, limit_s=15, every_s=0.2)
            assert "whatsapp" in inbound
            async with s.get(base + "/api/v1/tickets") as r:
                assert len((await r.json())["items"]) == 7

            async def telegram_linked() -> bool:
                """The Telegram citizen shared their WhatsApp phone: one contact now."""
                [tg] = [t for t in items if t["channel"] == "telegram"]
                async with s.get(f"{base}/api/v1/tickets/{tg['id']}") as r:
                    full = await r.json()
                return any(m.get("type") == "contact_linked" for m in full["messages"])

            await eventually(telegram_linked, limit_s=15, every_s=0.2)
            async with s.get(f"{graph_url}/_fake/sent") as r:  # Instagram and Cloud API acks
                paths = sorted(m["path"] for m in await r.json())
            assert paths == ["/v21.0/17841400000000099/messages"]
            async with s.get(base + "/") as r:
                page = await r.text()
                csp = r.headers["Content-Security-Policy"]
                assert r.headers["X-Frame-Options"] == "DENY"
            assert "KMN-2026-" in page or "KMN-" in page
            # the overview's one inline style is allowed by its hash, and nothing else is
            [style] = re.findall(r"<style>(.*?)</style>", page, re.S)
            digest = base64.b64encode(hashlib.sha256(style.encode()).digest()).decode()
            assert f"style-src 'sha256-{digest}'" in csp
            assert csp.startswith("default-src 'none'")
            assert "<script" not in page
            async with s.get(f"http://127.0.0.1:{fake_port}/_fake/messages") as r:
                assert len(await r.json()) == 5

            async def alerted() -> list[str]:
                """The backlog rule (more than one waiting in a unit) reaches the supervisors'
                group on the fake Bot API."""
                async with s.get(f"{bot_url}/_fake/messages") as r:
                    sent = await r.json()
                texts = [m["text"] for m in sent if m["chat_id"] == "-1001500630"]
                return texts

            # Which units the simulator's citizens land in varies from run to run.
            texts = await eventually(alerted, limit_s=15, every_s=0.2)
            assert all("AKTIF [backlog] Antrean unit " in t for t in texts), texts
            assert len(texts) == len(set(texts))  # each alert once, however many rounds ran
            async with s.get(base + "/api/v1/dashboard") as r:
                snap = await r.json()
            assert sum(u["waiting"] for u in snap["units"]) == 7
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, out.decode()[-2000:]
    text = out.decode()
    assert "demo API token:   demo-token-0123456789abcdef" in text
    assert "hub.stopped" in text
    assert "redis.stopped" in text
    # no message body ever reaches the logs
    assert "THR saya belum dibayar" not in text
    assert "Mohon segera ditanggapi" not in text
