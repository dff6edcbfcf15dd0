"""MIG without a GPU: the program's own MIG Commands replayed on namespaced nodes whose NVIDIA driver is a
stand-in (tests/integration/harness/fake_nvidia.py: nvidia-smi, nvidia-mig-parted and nvidia-modprobe
answering from a state file, /dev/nvidia0 and /dev/nvidia-caps/* device nodes of an unused major, and
/proc/driver/nvidia-caps/mig-minors and /proc/driver/nvidia/gpus/*/information on a tmpfs).

h-01 has an H100 (Hopper: the mode takes effect at once), a-01 an A100 (Ampere: the mode stays pending
until a GPU reset). Proves on real SLURM 22.05, configless: each node derives its GRES from the MIG devices
that exist and slurmd reads it through the controller's `Include`; a job per MIG type gets its devices
(CUDA_VISIBLE_DEVICES and the devices cgroup); over-requests fail; a layout change drains, applies and
resumes; a mismatch found at boot leaves the node drained with its reason; an Ampere mode change that
needs a reboot reboots at most once for a layout.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from hyperscaler.plan import PlanResult, run_plan
from render.mig import MIG_MANAGER_DROPIN, REPORT_UNIT, SLURMD_DROPIN
from tests.integration.harness.nodes import Cluster
from tests.integration.replay import Ran, give_nodes_their_host_keys, replay, replay_change, snapshot

pytestmark = pytest.mark.integration

NAMES = ["controller", "h-01", "a-01"]
H100, A100 = "0x233010DE", "0x20B210DE"
BALANCED = {"3g.40gb": 1, "2g.20gb": 1, "1g.10gb": 2}
A_LAYOUT = {"4g.40gb": 1, "1g.10gb": 3}


def mig_stack(cluster: Cluster, tmp: Path, h_layout: dict[str, int], **mig: object) -> Path:
    gpus = [
        {"address": "0000:41:00.0", "model": "h100-80gb", "iommu_group": 41},
        {"address": "0000:42:00.0", "model": "a100-80gb", "iommu_group": 42},
    ]
    group = {"count": 1, "vcpus": 2, "memory_mib": 2048, "gpus_per_node": 1}
    cluster_cfg = {
        "name": "migproof",
        "hosts": [{"name": "hv", "cpu": {"cores_per_socket": 16}, "memory_mib": 65536, "gpus": gpus}],
        "networks": {"management": {"cidr": f"{cluster.subnet}.0/24"}},
        "ssh": {"user": "root", "public_keys": [cluster.public_key]},
        "controller": {"vcpus": 1, "memory_mib": 2048, "address_offset": 11},
        "compute": [
            {"name": "h", "gpus": ["0000:41:00.0"], "address_offset": 12, **group},
            {"name": "a", "gpus": ["0000:42:00.0"], "address_offset": 13, **group},
        ],
        "storage": None,
        "slurm": {"cgroup_plugin": "cgroup/v1", "drain_timeout_s": 30},
        "mig": {
            "named_layouts": {"mixed": A_LAYOUT},
            "layouts": [{"group": "h", "profiles": h_layout}, {"group": "a", "layout": "mixed"}],
            **mig,
        },
    }
    path = tmp / "Pulumi.migproof.yaml"
    path.write_text(yaml.safe_dump({"config": {"hyperscaler:cluster": cluster_cfg}}))
    return path


@dataclass
class Proof:
    cluster: Cluster
    tmp: Path
    plan: PlanResult
    ran: list[Ran]

    def ssh(self, host: str, command: str, stdin: str | None, host_key: str) -> subprocess.CompletedProcess[str]:
        return self.cluster.ssh_pinned(host, command, host_key, stdin)

    def on(self, node: str, command: str, check: bool = True) -> str:
        return self.cluster[node].ssh(command, timeout=300, check=check).stdout

    def state(self, node: str) -> dict[str, Any]:
        return json.loads(self.on(node, "cat /var/lib/fake-nvidia/state.json"))

    def set_state(self, node: str, **changes: object) -> None:
        state = {**self.state(node), **changes}
        self.cluster[node].put_file("/var/lib/fake-nvidia/state.json", json.dumps(state))

    def replan(self, h_layout: dict[str, int], **mig: object) -> PlanResult:
        tmp = self.tmp / f"v{time.monotonic_ns()}"
        tmp.mkdir()
        return run_plan(mig_stack(self.cluster, tmp, h_layout, **mig))

    def node_line(self, node: str) -> dict[str, str]:
        out = self.on("controller", f"scontrol show node {node} -o")
        return dict(word.split("=", 1) for word in out.split() if "=" in word)

    def node_state(self, node: str) -> tuple[str, str]:
        """(state, reason) as sinfo shows them (it lists a node once per partition)."""
        out = self.on("controller", f"sinfo -h -N -n {node} -o '%t|%E' | head -1").strip()
        state, _, reason = out.partition("|")
        return state, reason

    def wait_state(self, node: str, wanted: tuple[str, ...], reason: str | None = None, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        while True:
            state, now = self.node_state(node)
            if state in wanted and (reason is None or now == reason):
                return now
            assert time.monotonic() < deadline, f"{node} is {state!r} ({now}), not {wanted} ({reason})"
            time.sleep(0.5)

    def boot(self, node: str) -> str:
        """What systemd does on the node at boot, in unit order, running the commands of the units the plan
        installed there: nvidia-mig-manager.service (its ExecStart), slurmd.service (the drop-in's
        ExecStartPre, then slurmd as Debian's unit starts it), hyperscaler-mig-report.service."""
        self.on(node, "pid=$(cat /run/slurmd.pid); kill $pid; while [ -e /proc/$pid ]; do sleep 0.1; done")
        log = []
        for unit, key in ((MIG_MANAGER_DROPIN, "ExecStart="), (SLURMD_DROPIN, "ExecStartPre=")):
            command = [line[len(key) :] for line in self.on(node, f"cat {unit}").splitlines() if line.startswith(key)]
            log.append(self.on(node, f"{command[-1]} 2>&1"))
        self.on(node, ". /etc/default/slurmd && slurmd $SLURMD_OPTIONS")
        report = next(
            line for line in self.on(node, f"cat {REPORT_UNIT}").splitlines() if line.startswith("ExecStart=")
        )
        log.append(self.on(node, f"{report[len('ExecStart=') :]} 2>&1"))
        return "\n".join(log)


@pytest.fixture(scope="module")
def proof(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proof]:
    tmp = tmp_path_factory.mktemp("mig")
    with Cluster(
        3,
        names=NAMES,
        fake_gpus={"h-01": 1, "a-01": 1},
        fake_nvidia={"h-01": H100, "a-01": A100},
        disks={"controller": {"disk/by-id/virtio-hs-state": 256}},
    ) as cluster:
        result = run_plan(mig_stack(cluster, tmp, BALANCED))
        give_nodes_their_host_keys(cluster, result.records)
        p = Proof(cluster, tmp, result, [])
        started = time.monotonic()
        p.ran = replay(result.records, p.ssh)
        print(f"replayed {len(p.ran)} commands in {time.monotonic() - started:.1f}s")
        yield p


def gres_lines(proof: Proof, node: str) -> dict[str, list[list[str]]]:
    """{MIG profile: [files of each device]} from the node's own GRES file."""
    out: dict[str, list[list[str]]] = {}
    for line in proof.on(node, "cat /etc/slurm/gres.d/node.conf").splitlines():
        if line.startswith("NodeName="):
            fields = dict(word.split("=", 1) for word in line.split())
            out.setdefault(fields["Type"], []).append(fields["MultipleFiles"].split(","))
    return out


def test_nodes_come_up_idle_with_typed_gres(proof: Proof) -> None:
    out = proof.on("controller", "sinfo -h -N -o '%N %t' | sort -u")
    assert sorted(out.split("\n")[:-1]) == ["a-01 idle", "h-01 idle"], out
    assert proof.node_line("h-01")["Gres"] == "gpu:3g.40gb:1,gpu:2g.20gb:1,gpu:1g.10gb:2"
    assert proof.node_line("a-01")["Gres"] == "gpu:4g.40gb:1,gpu:1g.10gb:3"
    # configless: the node runs the controller's gres.conf, whose Include is read from the node's own disk
    assert "Include /etc/slurm/gres.d/node.conf" in proof.on("h-01", "cat /run/slurm/conf/gres.conf")


def test_gres_files_come_from_the_devices_and_mig_minors(proof: Proof) -> None:
    minors = dict(line.split() for line in proof.on("h-01", "cat /proc/driver/nvidia-caps/mig-minors").splitlines())
    state = proof.state("h-01")
    expected: dict[str, list[list[str]]] = {}
    for inst in state["gpus"][0]["instances"]:
        gi, ci = minors[f"gpu0/gi{inst['gi']}/access"], minors[f"gpu0/gi{inst['gi']}/ci{inst['ci']}/access"]
        files = ["/dev/nvidia0", f"/dev/nvidia-caps/nvidia-cap{gi}", f"/dev/nvidia-caps/nvidia-cap{ci}"]
        expected.setdefault(inst["profile"], []).append(files)
    found = gres_lines(proof, "h-01")
    assert {k: sorted(v) for k, v in found.items()} == {k: sorted(v) for k, v in expected.items()}
    assert sorted(found) == ["1g.10gb", "2g.20gb", "3g.40gb"] and len(found["1g.10gb"]) == 2
    # the cap device nodes did not exist before: the script had nvidia-modprobe create them
    caps = proof.on("h-01", "ls /dev/nvidia-caps").split()
    assert len(caps) == 8, caps
    assert proof.on("h-01", "cat /run/hyperscaler/mig-status").strip() == "match"


# Inside a job: open every NVIDIA device node. The devices cgroup answers EPERM for a device the job was not
# given; a node it may use opens as far as the (absent) driver: ENXIO.
PROBE = """import errno, glob, os
for path in sorted(glob.glob("/dev/nvidia[0-9]*") + glob.glob("/dev/nvidia-caps/*")):
    try:
        os.close(os.open(path, os.O_RDONLY))
    except OSError as e:
        print(path, errno.errorcode[e.errno])
"""


def test_a_job_per_mig_type_gets_its_devices(proof: Proof) -> None:
    devices = gres_lines(proof, "h-01")
    proof.cluster["h-01"].put_file("/usr/local/lib/hyperscaler-test/probe.py", PROBE)
    for gtype, instances in sorted(devices.items()):
        out = proof.on(
            "controller",
            f"srun -w h-01 --gres=gpu:{gtype}:1 sh -c "
            "'echo CVD=$CUDA_VISIBLE_DEVICES; python3 /usr/local/lib/hyperscaler-test/probe.py'",
        )
        lines = out.splitlines()
        assert lines[0] == "CVD=0", out
        access = dict(line.split() for line in lines[1:])
        allowed = {p for p, code in access.items() if code == "ENXIO"}
        denied = {p for p, code in access.items() if code == "EPERM"}
        assert set(access.values()) <= {"ENXIO", "EPERM"}, access
        mine = [set(files) for files in instances]
        assert any(allowed == files for files in mine), (gtype, allowed, mine)
        others = {f for files in devices.values() for inst in files for f in inst} - allowed
        assert others and others <= denied, (gtype, others, denied)
    two = proof.on("controller", "srun -w h-01 --gres=gpu:1g.10gb:2 printenv CUDA_VISIBLE_DEVICES").strip()
    assert two == "0,1"


def test_over_requests_fail(proof: Proof) -> None:
    for request in ("-w h-01 --gres=gpu:3g.40gb:2", "-w h-01 --gres=gpu:1g.10gb:3", "--gres=gpu:4g.40gb:2",
                    "--gres=gpu:7g.80gb:1"):  # fmt: skip
        proc = proof.cluster["controller"].ssh(f"srun {request} true", check=False, timeout=60)
        assert proc.returncode != 0, request
        assert "Requested node configuration is not available" in proc.stderr, proc.stderr


def test_canary_ran_a_job_per_mig_type(proof: Proof) -> None:
    canary = next(r for r in proof.ran if r.name.endswith("-controller-canary"))
    result = json.loads(canary.stdout.strip().splitlines()[-1])
    assert result["gpu"] == {"1g.10gb": "0", "2g.20gb": "0", "3g.40gb": "0", "4g.40gb": "0"}, result


def test_the_ampere_mode_came_from_a_reset(proof: Proof) -> None:
    """a-01 is an A100 whose GPU allows a reset (as on bare metal): the mode became current without a
    reboot, and its instances exist."""
    gpu = proof.state("a-01")["gpus"][0]
    assert (gpu["current"], gpu["pending"]) == ("Enabled", "Enabled")
    assert sorted(i["profile"] for i in gpu["instances"]) == ["1g.10gb", "1g.10gb", "1g.10gb", "4g.40gb"]


def test_a_second_run_changes_nothing(proof: Proof) -> None:
    before = snapshot(NAMES, proof.on)
    replay(proof.plan.records, proof.ssh)
    assert snapshot(NAMES, proof.on) == before


def test_the_nvml_plugin_is_used_only_where_the_image_has_it(proof: Proof) -> None:
    plugin = "/usr/lib/x86_64-linux-gnu/slurm-wlm/gpu_nvml.so"
    before = proof.on("h-01", "cat /etc/slurm/gres.d/node.conf")
    assert "AutoDetect" not in before
    try:
        proof.on("h-01", f"touch {plugin} && /usr/local/libexec/hyperscaler/mig-gres.sh write")
        assert "NodeName=h-01 AutoDetect=nvml" in proof.on("h-01", "cat /etc/slurm/gres.d/node.conf")
    finally:
        proof.on("h-01", f"rm -f {plugin} && /usr/local/libexec/hyperscaler/mig-gres.sh write")
    assert proof.on("h-01", "cat /etc/slurm/gres.d/node.conf") == before


def test_a_layout_change_drains_applies_and_resumes(proof: Proof) -> None:
    """The running job finishes first (the drain waits for it); then the instances change, slurmd restarts
    with the new devices and the node returns to service. a-01 is not touched."""
    job = proof.on("controller", "sbatch --parsable -w h-01 --gres=gpu:3g.40gb:1 --wrap 'sleep 5'").strip()
    deadline = time.monotonic() + 30
    while proof.on("controller", f"squeue -h -j {job} -o %T").strip() != "RUNNING":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    a_slurmd = proof.on("a-01", "pgrep -x slurmd")
    after = proof.replan({"1g.10gb": 7})
    change = replay_change(proof.plan.records, after.records, proof.ssh)
    proof.plan = after
    hosts = {proof.cluster.node_at(r.host).name for r in change.ran}
    assert hosts == {"controller", "h-01"}, hosts
    assert proof.on("controller", f"sacct -n -X -j {job} -o State").split() == ["COMPLETED"]
    assert proof.on("a-01", "pgrep -x slurmd") == a_slurmd
    proof.wait_state("h-01", ("idle",))
    assert proof.node_line("h-01")["Gres"] == "gpu:1g.10gb:7"
    assert {k: len(v) for k, v in gres_lines(proof, "h-01").items()} == {"1g.10gb": 7}
    assert proof.on("controller", "srun -w h-01 --gres=gpu:1g.10gb:7 printenv CUDA_VISIBLE_DEVICES").strip() == (
        "0,1,2,3,4,5,6"
    )
    log = proof.on(
        "controller", "grep -c 'reason set to: hyperscaler: MIG layout change' /var/log/slurm/slurmctld.log || true"
    )
    assert int(log.strip() or 0) >= 1, "h-01 was never drained for its MIG change"


def test_a_mismatch_at_boot_leaves_the_node_drained_with_its_reason(proof: Proof) -> None:
    """The MIG manager fails at boot and the GPU holds other instances than the layout: slurmd still starts,
    with the devices that exist, and the node stays drained saying what differs. Fixed, it comes back."""
    state = proof.state("h-01")
    state["gpus"][0]["instances"] = [
        {"gi": 1, "ci": 0, "profile": "3g.40gb", "ci_profile_id": 0, "size": 4},
        {"gi": 2, "ci": 0, "profile": "3g.40gb", "ci_profile_id": 0, "size": 4},
    ]
    proof.set_state("h-01", gpus=state["gpus"], fail_apply=True)
    proof.boot("h-01")
    # drained by the report; SLURM also marks the registration invalid (fewer GPUs than slurm.conf says)
    wanted = "hyperscaler: MIG layout differs: declared 1g.10gb:7, found 3g.40gb:2"
    proof.wait_state("h-01", ("drain", "inval"), reason=wanted)
    assert {k: len(v) for k, v in gres_lines(proof, "h-01").items()} == {"3g.40gb": 2}
    # the canary fails at once, naming the node and the reason
    canary = next(r for r in proof.plan.records if r.name.endswith("-controller-canary"))
    with pytest.raises(AssertionError, match="h-01: hyperscaler: MIG layout differs"):
        replay([canary], proof.ssh)
    proof.set_state("h-01", fail_apply=False)
    proof.boot("h-01")
    assert proof.wait_state("h-01", ("idle",)) == "none"


def test_an_ampere_mode_change_reboots_once_and_never_loops(proof: Proof) -> None:
    """Turning MIG off on a-01, whose GPU cannot be reset from the guest (passthrough): the mode stays
    pending, so the mig step reboots the VM. Here, without systemd, it says so and stops; with the reboot
    for this layout already done, it refuses a second one and leaves the node drained with the reason."""
    proof.set_state("a-01", reset_available=False)
    after = proof.replan({"1g.10gb": 7}, enabled=False)
    old = {r.urn: r.plain_inputs for r in proof.plan.records}
    on_a01 = {r.name for r in after.records if "-a-01-" in r.name and old.get(r.urn) != r.plain_inputs}
    assert any(n.endswith("-a-01-mig") for n in on_a01) and not any(n.endswith("-a-01-slurmd") for n in on_a01)
    step = next(r for r in after.records if r.name.endswith("-a-01-mig"))
    with pytest.raises(AssertionError, match="needs a reboot to take effect and this node has no systemd"):
        replay(after.records, proof.ssh, only=on_a01)
    assert proof.state("a-01")["gpus"][0]["pending"] == "Disabled"
    key = next(line for line in proof.on("a-01", "cat /usr/local/libexec/hyperscaler/mig.sh").splitlines()
               if line.startswith("readonly LAYOUT_KEY="))  # fmt: skip
    proof.on("a-01", f"{key}; mkdir -p /var/lib/hyperscaler && echo $LAYOUT_KEY > /var/lib/hyperscaler/mig-reboot")
    with pytest.raises(AssertionError, match="still pending after the reboot this layout already had: not rebooting"):
        replay([step], proof.ssh)
    reason = proof.wait_state("a-01", ("drain", "drng"))
    assert reason == "hyperscaler: MIG layout differs: MIG mode still pending after the reboot for this layout"


def test_the_repository_key_must_have_the_pinned_fingerprint(proof: Proof) -> None:
    """mig.sh's repository step (add_apt_repository, render/scripts/apt-repo.sh), as installed on the node,
    with the key given as text: the pinned key goes into a keyring of its own that the sources line names;
    a key with another fingerprint is refused and nothing is written."""
    node = proof.cluster["h-01"]
    home = proof.tmp / "gnupg"
    home.mkdir(mode=0o700)
    env = {**os.environ, "GNUPGHOME": str(home)}
    gpg = ["gpg", "--batch", "--quiet"]
    try:
        subprocess.run([*gpg, "--passphrase", "", "--quick-gen-key", "test@example", "ed25519"], env=env, check=True)
        armored = subprocess.run(
            [*gpg, "--armor", "--export", "test@example"], env=env, check=True, capture_output=True
        )
        listing = subprocess.run([*gpg, "--with-colons", "--list-keys"], env=env, check=True, capture_output=True)
    finally:
        subprocess.run(["gpgconf", "--kill", "gpg-agent"], env=env, check=False)  # the agent gpg started
    fingerprint = next(line.split(":")[9] for line in listing.stdout.decode().splitlines() if line.startswith("fpr"))
    node.put_file("/tmp/key.asc", armored.stdout)
    functions = (
        "sed -n -e '/^log()/p' -e '/^die()/p' -e '/^apt_repo_fingerprints()/,/^}/p' -e '/^add_apt_repository()/,/^}/p'"
        " /usr/local/libexec/hyperscaler/mig.sh"
    )
    run = (
        'set -euo pipefail; eval "$({functions})"; REPO_NAME=nvidia-cuda REPO_KEY="$(cat /tmp/key.asc)"'
        " REPO_KEY_URL= REPO_FINGERPRINT={fpr} REPO_URL=https://repo.example/debian12/ REPO_SUITE=/"
        " REPO_COMPONENTS= add_apt_repository"
    )
    keyring = "/usr/share/keyrings/hyperscaler-nvidia-cuda.gpg"
    listed = "/etc/apt/sources.list.d/hyperscaler-nvidia-cuda.list"
    refused = node.ssh(run.format(functions=functions, fpr="0" * 40), check=False)
    assert refused.returncode != 0 and f"has fingerprint {fingerprint}, not the pinned" in refused.stderr
    assert node.ssh(f"ls {listed} {keyring}", check=False).returncode != 0
    node.ssh(run.format(functions=functions, fpr=fingerprint))
    assert node.read_file(listed) == f"deb [signed-by={keyring}] https://repo.example/debian12/ /\n"
    assert f"fpr:::::::::{fingerprint}:" in node.ssh(f"gpg --show-keys --with-colons {keyring}").stdout
    node.ssh(f"rm -f {listed} {keyring}")
