"""Docker and the NVIDIA runtime for real, on this machine, without a GPU.

* The daemon.json the program renders (the controller's, and a GPU node's with the `nvidia` runtime) is
  accepted by a real dockerd; a broken one is refused (the check can fail).
* nvidia-container-toolkit v1.20.2, built from the Go module proxy: `nvidia-ctk runtime configure
  --dry-run` merges into the program's daemon.json exactly the runtime the program already renders;
  `nvidia-ctk config --set nvidia-container-runtime.mode=cdi` (what the toolkit step runs) gives a CDI-mode
  runtime; with a CDI spec over fake device nodes, a container started with the NVIDIA runtime sees exactly
  the devices it asked for, and an unknown device is refused.

Every dockerd runs in a network namespace of its own (fake_host_netns), on private paths (harness/dockerd.py):
the host's FORWARD policy, /var/run/docker.* and /var/lib/docker are never touched, and the test checks it.
"""

from __future__ import annotations

import json
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from config import load_stack_file
from config.topology import plan_nodes
from e2e import build_engine
from render.containers import NVIDIA_RUNTIME, render_daemon_json
from tests.integration.harness import HarnessError
from tests.integration.harness._util import CLEAN_ENV
from tests.integration.harness.dockerd import Dockerd, fake_host_netns, host_state
from tests.integration.harness.nvidia_toolkit import ensure_nvidia_toolkit
from tests.stacks import ROOT

pytestmark = pytest.mark.integration

PROBE_GO = """package main

import (
	"fmt"
	"os"
	"sort"
	"strings"
)

// Lists the NVIDIA device nodes this container sees, one per line.
func main() {
	entries, err := os.ReadDir("/dev")
	if err != nil {
		panic(err)
	}
	var names []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "nvidia") {
			names = append(names, "/dev/"+e.Name())
		}
	}
	sort.Strings(names)
	fmt.Println(strings.Join(names, "\\n"))
}
"""


@pytest.fixture(scope="module")
def workstation() -> tuple[str, str]:
    """(controller's daemon.json, gpu-01's daemon.json) as the workstation stack renders them."""
    spec = load_stack_file(ROOT / "Pulumi.workstation.yaml").spec
    nodes = {n.name: n for n in plan_nodes(spec)}
    return render_daemon_json(spec, nodes["controller"]), render_daemon_json(spec, nodes["gpu-01"])


@pytest.fixture(scope="module")
def netns() -> Iterator[str]:
    before = host_state()
    with fake_host_netns() as name:
        yield name
    assert host_state() == before, "the host's firewall, sysctls or docker paths changed"


@pytest.fixture(scope="module")
def toolkit() -> Path:
    return ensure_nvidia_toolkit()


@pytest.fixture(scope="module")
def probe_image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A one-file image (a static Go binary at /probe), as a tar for `docker import`: no registry needed."""
    work = tmp_path_factory.mktemp("probe")
    (work / "go.mod").write_text("module probe\n\ngo 1.21\n")
    (work / "main.go").write_text(PROBE_GO)
    cache = Path("/var/cache/hyperscaler-engine")
    env = {**CLEAN_ENV, "CGO_ENABLED": "0", "HOME": str(work), "GOCACHE": str(work / "gocache"),
           "GOTOOLCHAIN": "local", "GOFLAGS": "-mod=mod"}  # fmt: skip
    subprocess.run([build_engine.go_binary(cache), "build", "-o", "probe", "."], cwd=work, env=env, check=True)
    tar = work / "image.tar"
    with tarfile.open(tar, "w") as out:
        out.add(work / "probe", arcname="probe")
    return tar


def test_rendered_daemon_json_is_accepted(netns: str, workstation: tuple[str, str], toolkit: Path) -> None:
    controller, gpu = workstation
    assert NVIDIA_RUNTIME not in json.loads(controller).get("runtimes", {})
    for text in (controller, gpu):
        with Dockerd(netns, config=text, path=(str(toolkit),)) as dockerd:
            info = json.loads(dockerd.docker("info", "--format", "{{json .}}").stdout)
            assert info["LoggingDriver"] == "json-file"
            assert info["LiveRestoreEnabled"] is True
            assert (NVIDIA_RUNTIME in info["Runtimes"]) == (text == gpu)


def test_a_broken_daemon_json_is_refused(netns: str, workstation: tuple[str, str]) -> None:
    broken = json.loads(workstation[0]) | {"log-opt": {"max-size": "1m"}}  # misspelt: log-opts
    refused = pytest.raises(HarnessError, match="don't match any configuration option")
    with refused, Dockerd(netns, config=json.dumps(broken), start_timeout=10):
        pass


def test_nvidia_ctk_merges_what_the_program_renders(
    tmp_path: Path, workstation: tuple[str, str], toolkit: Path
) -> None:
    gpu = json.loads(workstation[1])
    without = {k: v for k, v in gpu.items() if k != "runtimes"}
    path = tmp_path / "daemon.json"
    path.write_text(json.dumps(without))
    argv = [str(toolkit / "nvidia-ctk"), "runtime", "configure", "--runtime=docker", f"--config={path}", "--dry-run"]
    out = subprocess.run(argv, capture_output=True, text=True, check=True, env=CLEAN_ENV).stdout
    merged = json.loads(out[out.index("{") :])
    assert merged == gpu, f"nvidia-ctk would write:\n{out}\nthe program renders:\n{workstation[1]}"


CDI_SPEC = """\
cdiVersion: 0.5.0
kind: nvidia.com/gpu
devices:
  - name: "0"
    containerEdits:
      deviceNodes: [{{path: /dev/nvidia0, hostPath: {dev}/nvidia0}}]
  - name: "1"
    containerEdits:
      deviceNodes: [{{path: /dev/nvidia1, hostPath: {dev}/nvidia1}}]
containerEdits:
  deviceNodes: [{{path: /dev/nvidiactl, hostPath: {dev}/nvidiactl}}]
"""


def test_cdi_gives_a_container_exactly_the_devices_it_asks_for(
    tmp_path: Path, netns: str, workstation: tuple[str, str], toolkit: Path, probe_image: Path
) -> None:
    dev = tmp_path / "dev"  # fake device nodes (NVIDIA's major 195), never in the host's /dev
    dev.mkdir()
    for name, minor in (("nvidia0", 0), ("nvidia1", 1), ("nvidiactl", 255)):
        subprocess.run(["mknod", "-m", "666", str(dev / name), "c", "195", str(minor)], check=True)
    (tmp_path / "cdi").mkdir()
    (tmp_path / "cdi" / "nvidia.yaml").write_text(CDI_SPEC.format(dev=dev))
    # The runtime's config as the toolkit step makes it: `nvidia-ctk config --in-place --set ...mode=cdi`.
    config_home = tmp_path / "xdg"
    config = config_home / "nvidia-container-runtime" / "config.toml"
    config.parent.mkdir(parents=True)
    ctk = str(toolkit / "nvidia-ctk")
    subprocess.run([ctk, "config", "default", "--output", str(config)], check=True, env=CLEAN_ENV)
    for setting in (
        "nvidia-container-runtime.mode=cdi",
        f"nvidia-container-runtime.modes.cdi.spec-dirs={tmp_path / 'cdi'}",
    ):
        subprocess.run(
            [ctk, "config", f"--config-file={config}", "--in-place", "--set", setting], check=True, env=CLEAN_ENV
        )
    assert 'mode = "cdi"' in config.read_text()
    env = {"XDG_CONFIG_HOME": str(config_home)}
    with Dockerd(netns, config=workstation[1], path=(str(toolkit),), env=env) as dockerd:
        dockerd.docker("import", str(probe_image), "probe:1")

        def run(devices: str) -> subprocess.CompletedProcess[str]:
            argv = ["run", "--rm", "--network", "none", "--runtime", NVIDIA_RUNTIME,
                    "-e", f"NVIDIA_VISIBLE_DEVICES={devices}", "probe:1", "/probe"]  # fmt: skip
            return dockerd.docker(*argv, check=False)

        one = run("nvidia.com/gpu=0")
        assert one.returncode == 0, one.stderr
        assert one.stdout.split() == ["/dev/nvidia0", "/dev/nvidiactl"]
        both = run("nvidia.com/gpu=0,nvidia.com/gpu=1")
        assert both.returncode == 0 and both.stdout.split() == ["/dev/nvidia0", "/dev/nvidia1", "/dev/nvidiactl"]
        plain = dockerd.docker("run", "--rm", "--network", "none", "probe:1", "/probe", check=False)
        assert plain.returncode == 0 and plain.stdout.split() == []  # runc alone: no GPU at all
        unknown = run("nvidia.com/gpu=7")
        assert unknown.returncode != 0
        assert "unresolvable CDI devices" in unknown.stderr, unknown.stderr
