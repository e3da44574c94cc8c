"""deploy/ is checked, not just shipped: the Redis settings load in a real redis-server, the
Kubernetes manifests render and name real roles, ports, probes and routes, the compose file
and the image build only from files that exist, the systemd template starts the right role,
and a process without the web role answers its probes and metrics on ``hub.ops_port``.

No Docker engine or cluster runs here; what needs one (building the image, applying the
manifests) is left to the deployment, everything they depend on is checked."""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from redis import Redis as SyncRedis

from adapters.redis_server import free_port
from hub.runtime import ROLES
from hub.settings import load_settings
from tests import redis_cluster
from tests.helpers import eventually

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
OPS_ROUTES = {"/healthz", "/readyz", "/metrics"}
NOT_PUBLIC = OPS_ROUTES  # never routed from the internet


def _env_example() -> dict[str, str]:
    out: dict[str, str] = {}
    for line in (DEPLOY / "secrets.env.example").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition("=")
            filler = "a-secret-for-the-test-0123456789"
            out[key] = value.replace('""', f'"{filler}"') if value else filler
    return out


def _k8s_docs() -> list[dict[str, Any]]:
    """The kustomization's resources, rendered by kubectl when it is installed (as on the
    development machines), else read from the files it lists (same documents, no labels)."""
    kubectl = shutil.which("kubectl")
    if kubectl:
        out = subprocess.run(
            [kubectl, "kustomize", str(K8S)], capture_output=True, text=True, timeout=60
        )
        assert out.returncode == 0, out.stderr
        return [d for d in yaml.safe_load_all(out.stdout) if d]
    kust = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    docs = [d for r in kust["resources"] for d in yaml.safe_load_all((K8S / r).read_text()) if d]
    return docs


def _by_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def _container(d: dict[str, Any]) -> dict[str, Any]:
    [c] = d["spec"]["template"]["spec"]["containers"]
    return dict(c)


def _roles(args: list[str]) -> list[str]:
    """``["--role", "intake", "--role", "observer"]`` → ``["intake", "observer"]``; nothing
    else may be in the arguments (the image's entry point has the rest)."""
    assert len(args) % 2 == 0, args
    assert args[0::2] == ["--role"] * (len(args) // 2), args
    return args[1::2]


def _check_placement(where: str, roles: dict[str, list[str]]) -> None:
    """Each process (deployment, service) is named after its first role; together they run
    every role; the observer (a pass over the open tickets every 15 s) never shares a
    process with a dispatcher, whose batches it would lengthen."""
    for name, rs in roles.items():
        assert set(rs) <= ROLES, (where, name, rs)
        assert name == rs[0], (where, name, rs)
        assert not {"dispatcher", "observer"} <= set(rs), (where, name, rs)
    assert set().union(*roles.values()) == ROLES, where


def test_redis_conf_loads_in_a_real_redis_server(tmp_path: Path) -> None:
    """deploy/redis.conf as written (only port, directory and foreground changed for the
    test) starts a redis-server with AOF on and eviction off."""
    port = free_port()
    proc = subprocess.Popen(
        [shutil.which("redis-server") or "redis-server", str(DEPLOY / "redis.conf"),
         "--port", str(port), "--dir", str(tmp_path), "--daemonize", "no",
         "--logfile", str(tmp_path / "redis.log")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        client = SyncRedis(port=port, decode_responses=True)
        for _ in range(400):
            with contextlib.suppress(Exception):
                if client.ping():
                    break
            assert proc.poll() is None, (tmp_path / "redis.log").read_text()
            time.sleep(0.025)  # a sync test, outside any event loop
        conf = client.config_get("*")
        assert conf["appendonly"] == "yes"
        assert conf["appendfsync"] == "everysec"
        assert conf["maxmemory-policy"] == "noeviction"
        client.close()
    finally:
        proc.terminate()
        proc.wait(10)


def test_kubernetes_redis_keeps_the_settings_of_redis_conf() -> None:
    """The StatefulSet passes its settings on the command line; the ones that keep data safe
    must say what deploy/redis.conf says."""
    conf = dict(
        line.split(None, 1)
        for line in (DEPLOY / "redis.conf").read_text().splitlines()
        if line.strip() and not line.startswith("#") and " " in line
    )
    [redis] = _by_kind(_k8s_docs(), "StatefulSet").values()
    args = shlex.split(" ".join(_container(redis)["args"]).replace('"$REDIS_PASSWORD"', "pw"))
    flags = {a[2:]: args[i + 1] for i, a in enumerate(args) if a.startswith("--")}
    for key in ("appendonly", "appendfsync", "maxmemory-policy", "appenddirname"):
        assert flags[key].strip('"') == conf[key].strip('"'), key


def test_kubernetes_manifests_name_real_roles_ports_probes_and_routes() -> None:
    docs = _k8s_docs()
    settings = load_settings(K8S / "hub.toml", _env_example())
    kust = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    deployments = _by_kind(docs, "Deployment")
    _check_placement(
        "k8s",
        {n.removeprefix("hub-"): _roles(_container(d)["args"]) for n, d in deployments.items()},
    )
    secret = yaml.safe_load((K8S / "secret.example.yaml").read_text())
    assert set(secret["stringData"]) == set(_env_example())
    claims = set(_by_kind(docs, "PersistentVolumeClaim"))
    for name, d in deployments.items():
        c = _container(d)
        role = name.removeprefix("hub-")
        assert c["image"].split(":")[0].endswith(kust["images"][0]["newName"].split("/")[-1])
        assert c["envFrom"] == [{"secretRef": {"name": secret["metadata"]["name"]}}]
        ports = {p["name"]: p["containerPort"] for p in c["ports"]}
        if role == "web":
            assert ports == {"http": settings.hub.listen_port}
        else:
            [ops] = [e for e in c["env"] if e["name"] == "HUB__HUB__OPS_PORT"]
            assert ports == {"ops": int(ops["value"])}
        for probe in ("readinessProbe", "livenessProbe"):
            get = c[probe]["httpGet"]
            assert get["path"] in OPS_ROUTES
            assert get["port"] in ports
        mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
        volumes = {v["name"]: v for v in d["spec"]["template"]["spec"]["volumes"]}
        assert str(settings.hub.data_dir) in mounts  # attachments: shared by every role
        data = volumes[mounts[str(settings.hub.data_dir)]]
        assert data["persistentVolumeClaim"]["claimName"] in claims
        assert volumes[mounts["/etc/kemnaker-hub"]]["configMap"]["name"].startswith(
            kust["configMapGenerator"][0]["name"]
        )
        labels = d["spec"]["template"]["metadata"]["labels"]
        assert d["spec"]["selector"]["matchLabels"].items() <= labels.items()
    for pvc in _by_kind(docs, "PersistentVolumeClaim").values():  # attachments, archive
        assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    web_labels = deployments["hub-web"]["spec"]["template"]["metadata"]["labels"]
    assert _by_kind(docs, "Service")["hub-web"]["spec"]["selector"].items() <= web_labels.items()
    [ingress] = _by_kind(docs, "Ingress").values()
    routed = {p["path"] for r in ingress["spec"]["rules"] for p in r["http"]["paths"]}
    assert "/webhooks" in routed
    assert "/console" in routed
    assert not routed & NOT_PUBLIC
    assert settings.hub.public_url.endswith(ingress["spec"]["rules"][0]["host"])


def test_compose_and_image_use_only_files_that_exist() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    hub_services = {n: s for n, s in compose["services"].items() if n != "redis"}
    _check_placement("compose", {n: _roles(s["command"]) for n, s in hub_services.items()})
    for name, service in hub_services.items():
        build = service["build"]
        assert (DEPLOY / build["context"] / build["dockerfile"]).is_file()
        for mount in service["volumes"]:
            source = mount.split(":")[0]
            if source.startswith("."):
                assert (DEPLOY / source).is_file(), mount
        if name != "web":
            assert int(service["environment"]["HUB__HUB__OPS_PORT"]) > 0
    assert (DEPLOY / "redis.conf").is_file()
    # the image: every COPY source exists and is not ignored; it runs the hub's CLI
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
    allowed = [p[1:].rstrip("/") for p in ignore if p.startswith("!")]
    for line in re.findall(r"^COPY (.+)$", dockerfile, re.M):
        for src in line.split()[:-1]:
            assert (ROOT / src).exists(), src
            assert any(fnmatch.fnmatch(src.rstrip("/"), pat) for pat in allowed), src
    assert (
        'ENTRYPOINT ["python", "-m", "hub", "run", "--config", "/etc/kemnaker-hub/hub.toml"]'
        in (dockerfile)
    )


def test_web_and_observer_share_the_archive_volume() -> None:
    """Archived tickets (hub/archive.py): the observer (in intake) writes them under
    ``settings.archive_dir``, every web process reads them back (``?archived=1``): in compose
    and in Kubernetes both mount the same volume there, the web read-only, and the
    Kubernetes claim is ReadWriteMany (web pods and intake pods on different nodes)."""
    settings = load_settings(K8S / "hub.toml", _env_example())
    archive = str(settings.archive_dir)
    assert archive == f"{settings.hub.data_dir}/archive"  # the default the mounts follow
    assert settings.retention.archive_closed_after_days == 0  # off until an operator says

    # compose: one named volume, mounted in web (read-only) and intake (read-write)
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())

    def compose_mount(service: str) -> tuple[str, str]:
        [(source, mode)] = [
            (m.split(":")[0], [*m.split(":"), "rw"][2])
            for m in compose["services"][service]["volumes"]
            if m.split(":")[1] == archive
        ]
        return source, mode

    web_source, web_mode = compose_mount("web")
    intake_source, intake_mode = compose_mount("intake")
    assert web_source == intake_source
    assert web_source in compose["volumes"]  # a named volume, not a directory of one host
    assert (web_mode, intake_mode) == ("ro", "rw")
    assert "observer" in compose["services"]["intake"]["command"]
    for service in ("web", "intake"):  # the rest of x-hub's mounts are kept
        mounts = {m.split(":")[1] for m in compose["services"][service]["volumes"]}
        assert {"/etc/kemnaker-hub/hub.toml", str(settings.hub.data_dir)} <= mounts, service

    # Kubernetes: one ReadWriteMany claim, mounted in hub-web (read-only) and hub-intake
    docs = _k8s_docs()
    deployments = _by_kind(docs, "Deployment")
    claims = _by_kind(docs, "PersistentVolumeClaim")

    def k8s_mount(name: str) -> tuple[str, bool]:
        d = deployments[name]
        [mount] = [m for m in _container(d)["volumeMounts"] if m["mountPath"] == archive]
        volumes = {v["name"]: v for v in d["spec"]["template"]["spec"]["volumes"]}
        return volumes[mount["name"]]["persistentVolumeClaim"]["claimName"], bool(
            mount.get("readOnly")
        )

    web_claim, web_ro = k8s_mount("hub-web")
    intake_claim, intake_ro = k8s_mount("hub-intake")
    assert web_claim == intake_claim
    assert (web_ro, intake_ro) == (True, False)
    assert claims[web_claim]["spec"]["accessModes"] == ["ReadWriteMany"]
    assert "observer" in _roles(_container(deployments["hub-intake"])["args"])
    # the image has the directory, owned by the hub's user (a new volume takes its owner)
    dockerfile = " ".join((DEPLOY / "Dockerfile").read_text().replace("\\\n", " ").split())
    owned = f"install -d -o kemnaker-hub -g kemnaker-hub {settings.hub.data_dir} {archive}"
    assert owned in dockerfile
    # systemd: the one directory the hub may write covers the archive
    unit = (DEPLOY / "systemd" / "kemnaker-hub@.service").read_text()
    assert f"ReadWritePaths={settings.hub.data_dir}\n" in unit


def test_runtime_lock_has_the_same_pins_as_the_full_lock() -> None:
    """The image installs deploy/requirements-runtime.lock: the versions the tests ran with."""

    def pins(path: Path) -> dict[str, str]:
        text = path.read_text()
        return dict(re.findall(r"^([A-Za-z0-9_.-]+)==(\S+) \\$", text, re.M))

    full, runtime = pins(ROOT / "requirements.lock"), pins(DEPLOY / "requirements-runtime.lock")
    assert {"aiohttp", "redis", "structlog", "twilio"} <= set(runtime)
    assert "pytest" not in runtime
    assert {k: full.get(k) for k in runtime} == runtime


def test_systemd_instance_name_picks_the_role(tmp_path: Path) -> None:
    """kemnaker-hub@dispatcher-2 runs ``--role dispatcher``, kemnaker-hub@intake.observer-2
    ``--role intake --role observer``: ExecStart expanded the way systemd does (%i, %%, $$),
    then run by sh with the hub replaced by echo."""
    unit = (DEPLOY / "systemd" / "kemnaker-hub@.service").read_text()
    start = re.search(r"^ExecStart=(.+?)(?<!\\)$", unit, re.M | re.S)
    assert start is not None
    for instance, roles in (
        ("web", ["web"]),
        ("dispatcher-2", ["dispatcher"]),
        ("intake-a-b", ["intake"]),
        ("intake.observer", ["intake", "observer"]),
        ("intake.observer-2", ["intake", "observer"]),
        ("observer-1", ["observer"]),
    ):
        line = start.group(1).replace("\\\n", " ").replace("%i", instance)
        line = line.replace("%%", "%").replace("$$", "$")
        argv = shlex.split(line)
        assert argv[:2] == ["/bin/sh", "-c"]
        script = argv[2].replace("exec /opt/kemnaker-hub/.venv/bin/python", "echo")
        out = subprocess.run(["/bin/sh", "-c", script, *argv[3:]], capture_output=True, text=True)
        assert out.stdout.split() == [
            "-m", "hub", "run", "--config", "/etc/kemnaker-hub/hub.toml",
            *(arg for role in roles for arg in ("--role", role)),
        ]  # fmt: skip
        assert set(roles) <= ROLES
    # the example in the unit's header runs every role
    header = unit.split("[Unit]")[0]
    named = re.findall(r"kemnaker-hub@([\w.]+)", header.split("systemctl enable --now")[1])
    assert set().union(*(n.split("-")[0].split(".") for n in named)) == ROLES


async def test_a_process_without_the_web_role_serves_probes_and_metrics(
    redis_url: str, tmp_path: Path
) -> None:
    ops_port = free_port()
    config = tmp_path / "hub.toml"
    config.write_text(
        (K8S / "hub.toml").read_text()
        .replace('listen_host = "0.0.0.0"', 'listen_host = "127.0.0.1"')
        .replace('data_dir = "/var/lib/kemnaker-hub"', f'data_dir = "{tmp_path}"')
    )  # fmt: skip
    env = {**os.environ, **_env_example(), "HUB__REDIS__URL": redis_url,
           "HUB__REDIS__CLUSTER": str(redis_cluster.is_cluster_url(redis_url)).lower(),
           "HUB__HUB__OPS_PORT": str(ops_port), "HUB__HUB__LOG_LEVEL": "warning"}  # fmt: skip
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hub", "run", "--config", str(config), "--role", "dispatcher",
        cwd=ROOT, env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    base = f"http://127.0.0.1:{ops_port}"
    try:
        async with aiohttp.ClientSession() as s:

            async def ready() -> bool:
                assert proc.returncode is None, "the dispatcher exited"
                with contextlib.suppress(aiohttp.ClientConnectionError):
                    async with s.get(base + "/readyz") as r:
                        return r.status == 200 and (await r.json())["checks"]["redis"]
                return False

            await eventually(ready, limit_s=30, every_s=0.1)
            async with s.get(base + "/metrics") as r:
                assert r.status == 200
                assert "hub_dispatched_messages_total" in await r.text()
            for path in ("/api/v1/tickets", "/console", "/webhooks/whatsapp/wa1"):
                async with s.get(base + path) as r:
                    assert r.status == 404, path  # no web role: nothing but the probes
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        _, err = await proc.communicate()
        assert proc.returncode == 0, err.decode()[-2000:]


def test_serve_is_run_and_poller_is_the_intake_role() -> None:
    """The names the operations guide uses: ``python -m hub serve --role poller``, and
    ``--role observer`` beside it."""
    from hub.cli import ROLE_ALIASES, _parser

    args = _parser().parse_args(
        ["serve", "--config", "x.toml", "--role", "poller", "--role", "web"]
    )
    assert args.command == "serve"
    assert {ROLE_ALIASES.get(r, r) for r in args.role} == {"intake", "web"}
    args = _parser().parse_args(["serve", "--role", "poller", "--role", "observer"])
    assert {ROLE_ALIASES.get(r, r) for r in args.role} == {"intake", "observer"}
    for role in ROLES:  # every role can be asked for
        assert _parser().parse_args(["run", "--role", role]).role == [role]
