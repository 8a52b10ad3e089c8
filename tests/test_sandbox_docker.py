"""DockerSandbox against a real daemon: the backend-neutral suite, isolation, limits and leftovers.

Needs dockerd and the image `agent-sandbox:bookworm` (.ci/docker-setup.sh makes both). Without them the tests
skip on a developer machine and fail when CI is set: CI runs the setup first.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
from conftest import assert_grouped, connect_script, host_addresses, host_has, listener
from shell_suite import ALL_CHECKS, until

from agent.runtime.docker import LABEL, OWNER_LABEL, RUN_LABEL, DockerSandbox, prune_containers
from agent.runtime.sandbox import Sandbox, SandboxError, SandboxSpec

# Sandboxes and signals look at machine-wide state (bwrap and docker processes, labelled containers,
# `agent sandbox prune --all`): with pytest-xdist these modules share one worker (--dist loadgroup).
pytestmark = pytest.mark.xdist_group("sandboxes")

IMAGE = SandboxSpec().image
ROOT = Path(__file__).resolve().parent.parent


def _docker_problem() -> str | None:
    try:
        client = docker.from_env()
        client.ping()
    except docker.errors.DockerException as exc:
        return f"no Docker daemon: {exc}"
    try:
        client.images.get(IMAGE)
    except docker.errors.ImageNotFound:
        return f"image {IMAGE} is missing"
    finally:
        client.close()
    return None


@pytest.fixture(scope="module", autouse=True)
def docker_available() -> None:
    problem = _docker_problem()
    if problem is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{problem}; CI must run .ci/docker-setup.sh before the tests", pytrace=False)
    pytest.skip(f"{problem} (run .ci/docker-setup.sh as root)")


@pytest.fixture
def client() -> Iterator[docker.DockerClient]:
    client = docker.from_env()
    yield client
    client.close()


@pytest.fixture
async def sandbox(workspace: Path):
    async with DockerSandbox(workspace) as box:
        yield box


def labelled(client: docker.DockerClient, run_id: str | None = None) -> list[str]:
    label = f"{RUN_LABEL}={run_id}" if run_id else f"{LABEL}=1"
    # Low-level list: `containers.list` inspects each container after listing and fails on one that removed
    # itself in between (auto_remove), which is exactly what these tests wait for.
    return [c["Id"] for c in client.api.containers(all=True, filters={"label": label})]


# --- the contract -------------------------------------------------------------------------------------


def test_docker_sandbox_satisfies_the_protocol(workspace: Path) -> None:
    box = DockerSandbox(workspace)
    assert isinstance(box, Sandbox)
    assert (box.kind, box.workspace, box.workdir) == ("docker", workspace.resolve(), "/workspace")


@pytest.mark.parametrize("check", ALL_CHECKS, ids=lambda check: check.__name__)
async def test_shell_suite(check, sandbox: DockerSandbox) -> None:
    await check(sandbox)


# --- isolation ----------------------------------------------------------------------------------------


async def test_writes_outside_the_workspace_fail(sandbox: DockerSandbox) -> None:
    marker = f"agent-escape-{os.getpid()}"
    for folder in ("/etc", "/usr", "/root", "/"):
        result = await sandbox.exec(f"echo pwned > {folder.rstrip('/')}/{marker}")
        assert result.exit_code != 0, f"writing to {folder} succeeded"
        assert not host_has(f"{folder.rstrip('/')}/{marker}"), f"the host's {folder} was written"
    inside = await sandbox.exec(f"echo fine > {marker} && echo tmp > /tmp/{marker} && cat /tmp/{marker}")
    assert inside.ok and inside.stdout == "tmp\n"
    assert (sandbox.workspace / marker).read_text() == "fine\n"


async def test_network_is_off_by_default(sandbox: DockerSandbox, client: docker.DockerClient) -> None:
    assert client.api.inspect_container(sandbox.container_id)["HostConfig"]["NetworkMode"] == "none"
    addresses = host_addresses()
    assert len(addresses) > 1, "the host needs a non-loopback address for this test"
    with listener() as (port, peers):
        result = await sandbox.exec(connect_script(addresses, port), timeout=30)
    assert result.ok, result
    assert "connected" not in result.stdout, result.stdout
    assert peers == []


async def test_network_on_reaches_the_host_over_the_bridge(
    workspace: Path, client: docker.DockerClient
) -> None:
    async with DockerSandbox(workspace, SandboxSpec(kind="docker", network=True)) as box:
        info = client.api.inspect_container(box.container_id)
        assert info["HostConfig"]["NetworkMode"] == "bridge"
        gateway = info["NetworkSettings"]["Networks"]["bridge"]["Gateway"]
        with listener() as (port, peers):
            result = await box.exec(connect_script([gateway], port), timeout=30)
        assert f"{gateway} connected" in result.stdout, result
        assert peers


async def test_limits_user_and_read_only_root_are_applied(
    workspace: Path, client: docker.DockerClient
) -> None:
    os.chown(workspace, 1000, 1000)
    spec = SandboxSpec(kind="docker", cpus=1.0, memory="256m", pids=64, env={"FROM_SPEC": "yes"})
    async with DockerSandbox(workspace, spec) as box:
        host = client.api.inspect_container(box.container_id)["HostConfig"]
        assert (host["NanoCpus"], host["Memory"], host["PidsLimit"]) == (10**9, 256 * 2**20, 64)
        assert host["ReadonlyRootfs"] is True
        result = await box.exec('id -u; id -g; printf "%s\\n" "$FROM_SPEC"; touch made-inside')
        assert result.stdout == "1000\n1000\nyes\n", result
        made = (workspace / "made-inside").stat()
        assert (made.st_uid, made.st_gid) == (1000, 1000)


async def test_copy_in_and_out_of_tmp_and_refusal_elsewhere(sandbox: DockerSandbox, tmp_path: Path) -> None:
    source = tmp_path / "grader.sh"
    source.write_text("echo graded\n")
    await sandbox.copy_in(source, "/tmp/hidden/grader.sh")
    assert (await sandbox.exec("sh /tmp/hidden/grader.sh")).stdout == "graded\n"
    await sandbox.copy_out("/tmp/hidden", tmp_path / "back")
    assert (tmp_path / "back" / "grader.sh").read_text() == "echo graded\n"
    with pytest.raises(SandboxError, match="read-only|writable"):
        await sandbox.copy_in(source, "/usr/local/bin/grader.sh")
    with pytest.raises(SandboxError):
        await sandbox.copy_out("/no/such/file", tmp_path / "nothing")


async def test_output_file_outside_the_workspace(sandbox: DockerSandbox, tmp_path: Path) -> None:
    log = tmp_path / "logs" / "out.log"
    result = await sandbox.exec("printf 'o\\n'; printf 'e\\n' >&2", output_file=log)
    assert result.output_path == log and log.read_bytes() == b"o\ne\n"
    leftovers = await sandbox.exec("ls -A /tmp")
    assert ".agent-output" not in leftovers.stdout


async def test_a_dead_container_is_a_sandbox_error(
    sandbox: DockerSandbox, client: docker.DockerClient
) -> None:
    await asyncio.to_thread(client.api.kill, sandbox.container_id)
    with pytest.raises(SandboxError):
        for _ in range(50):  # the reader sees the connection drop a moment after the kill
            await sandbox.exec("true")
            await asyncio.sleep(0.1)


# --- errors a user can act on -------------------------------------------------------------------------


async def test_missing_image_says_how_to_build_it(workspace: Path) -> None:
    spec = SandboxSpec(kind="docker", image="agent-sandbox:no-such-tag")
    with pytest.raises(SandboxError, match="debootstrap"):
        async with DockerSandbox(workspace, spec):
            pass


async def test_no_daemon_says_how_to_start_one(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{workspace}/no-docker.sock")
    with pytest.raises(SandboxError, match="dockerd"):
        async with DockerSandbox(workspace):
            pass


async def test_image_without_python_is_explained(workspace: Path, client: docker.DockerClient) -> None:
    spec = SandboxSpec(kind="docker", env={"PATH": "/nowhere"})  # as if the image had no python3
    box = DockerSandbox(workspace, spec)
    with pytest.raises(SandboxError, match="needs python3"):
        async with box:
            pass
    assert labelled(client, box.run_id) == []


# --- nothing left behind ------------------------------------------------------------------------------


@pytest.fixture
def private_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Host temporary files of this test go here, so that leftovers can be seen."""
    folder = tmp_path / "host-tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def assert_clean(
    client: docker.DockerClient, box: DockerSandbox, volumes: list[str], private_tmp: Path
) -> None:
    assert labelled(client, box.run_id) == [], "the container survived"
    for volume in volumes:
        with pytest.raises(docker.errors.NotFound):
            client.volumes.get(volume)
    assert list(private_tmp.iterdir()) == []
    assert [p.name for p in box.workspace.iterdir() if p.name.startswith(".")] == []


def tmp_volumes(client: docker.DockerClient, box: DockerSandbox) -> list[str]:
    mounts = client.api.inspect_container(box.container_id)["Mounts"]
    return [m["Name"] for m in mounts if m["Type"] == "volume"]


async def test_nothing_left_after_a_normal_end(workspace, client, private_tmp) -> None:
    box = DockerSandbox(workspace)
    async with box:
        volumes = tmp_volumes(client, box)
        await box.copy_in(ROOT / "runtime", "code")
        await box.copy_out("code", private_tmp.parent / "copied")
        await box.spawn("sleep 600")
    assert_clean(client, box, volumes, private_tmp)


async def test_nothing_left_after_a_timeout(workspace, client, private_tmp) -> None:
    box = DockerSandbox(workspace)
    async with box:
        volumes = tmp_volumes(client, box)
        assert (await box.exec("sleep 30", timeout=0.3)).timed_out
    assert_clean(client, box, volumes, private_tmp)


async def test_nothing_left_after_an_exception(workspace, client, private_tmp) -> None:
    box = DockerSandbox(workspace)
    with pytest.raises(RuntimeError):
        async with box:
            volumes = tmp_volumes(client, box)
            raise RuntimeError("the agent failed")
    assert_clean(client, box, volumes, private_tmp)


async def test_nothing_left_after_cancellation(workspace, client, private_tmp) -> None:
    box = DockerSandbox(workspace)
    volumes: list[str] = []

    async def run() -> None:
        async with box:
            volumes.extend(tmp_volumes(client, box))
            await box.exec("sleep 60", timeout=None)

    task = asyncio.create_task(run())
    assert await until(lambda: bool(volumes), timeout=30)
    await asyncio.sleep(0.2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert_clean(client, box, volumes, private_tmp)


async def test_nothing_left_when_cancelled_while_starting(workspace, client) -> None:
    for delay in (0.05, 0.2, 0.4):
        box = DockerSandbox(workspace)
        task = asyncio.create_task(box.__aenter__())
        await asyncio.sleep(delay)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
            await box.__aexit__(None, None, None)  # it had started after all
        assert labelled(client, box.run_id) == []


async def test_container_of_a_crashed_agent_removes_itself(workspace, client) -> None:
    """The runner exits when the attach connection closes, so a killed agent leaves no container."""
    script = (
        "import anyio, sys\n"
        "from pathlib import Path\n"
        "from agent.runtime.docker import DockerSandbox\n"
        "async def main():\n"
        f"    async with DockerSandbox(Path({str(workspace)!r})) as box:\n"
        "        print(box.run_id, flush=True)\n"
        "        await anyio.sleep(600)\n"
        "anyio.run(main)\n"
    )
    agent = await asyncio.create_subprocess_exec(
        sys.executable, "-c", script, cwd=ROOT, stdout=asyncio.subprocess.PIPE
    )
    try:
        run_id = (await asyncio.wait_for(agent.stdout.readline(), 60)).decode().strip()
        assert run_id and labelled(client, run_id)
    finally:
        agent.kill()
        await agent.wait()
    assert await until(lambda: not labelled(client, run_id), timeout=20), (
        "the orphan container is still there"
    )


async def test_prune_removes_containers_of_dead_agents_and_keeps_live_ones(client) -> None:

    finished = await asyncio.create_subprocess_exec("true")
    await finished.wait()  # its pid names an agent process that no longer exists
    host = socket.gethostname()
    dead = client.containers.create(IMAGE, ["sleep", "600"], labels={
        LABEL: "1", RUN_LABEL: "leftover", OWNER_LABEL: f"{host}:{finished.pid}"})
    live = client.containers.create(IMAGE, ["sleep", "600"], labels={
        LABEL: "1", RUN_LABEL: "live-owner", OWNER_LABEL: f"{host}:{os.getpid()}"})
    dead.start()
    live.start()
    try:
        removed = await asyncio.to_thread(prune_containers)
        assert dead.id in removed and live.id not in removed
        assert labelled(client, "leftover") == [] and labelled(client, "live-owner")
        removed = await asyncio.to_thread(lambda: prune_containers(everything=True))
        assert live.id in removed
    finally:
        for container in (dead, live):
            try:
                container.remove(force=True)
            except Exception:
                pass


def test_prune_without_daemon_is_a_sandbox_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/none.sock")
    with pytest.raises(SandboxError, match="systemctl start docker"):
        prune_containers()


def test_runner_output_capture_matches_elide() -> None:
    from agent.runtime._sandbox_agent import OutputCapture
    from agent.runtime.sandbox import elide

    text = "".join(f"{i}\u00e9\n" for i in range(5000))
    data = text.encode()
    for cap in (0, 1, 7, 100, 30_000, 100_000):
        capture = OutputCapture(cap)
        for offset in range(0, len(data), 997):  # chunks that split multi-byte characters
            capture.feed(data[offset : offset + 997])
        capture.feed(b"", final=True)
        assert capture.chars == len(text) and capture.render(cap) == elide(text, cap), cap


def test_the_sandbox_tests_share_one_worker(request) -> None:
    assert_grouped(request, "sandboxes")
