"""SlurmCluster under mocks: secrets stay secret, triggers follow content, and SLURM changes never touch VMs."""

from __future__ import annotations

from config.models import ClusterSpec
from config.presets import apply_preset
from hyperscaler.mocks import Registration, contains_secret
from render.common import content_hash
from tests.components.cluster_run import PRIVATE_KEY, run_cluster

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEWwoQJm5BAL1DlfU575U2gWJDQ8/y+UHR9nMWDIG8eR test"


def spec_with(**overrides: object) -> ClusterSpec:
    raw = {"preset": "dev", "name": "dev", "ssh": {"public_keys": [KEY]}, **overrides}
    return ClusterSpec.model_validate(apply_preset(raw))


def run(spec: ClusterSpec) -> dict[str, Registration]:
    return run_cluster(spec)


def commands(records: dict[str, Registration]) -> dict[str, Registration]:
    return {n: r for n, r in records.items() if r.type == "command:remote:Command"}


def test_slurm_changes_touch_no_vm_and_no_volume() -> None:
    before = run(spec_with())
    after = run(
        spec_with(
            slurm={
                "partitions": [{"name": "batch", "default": True, "max_time": "1-00:00:00"}],
                "options": {"MaxJobCount": "20000"},
            }
        )
    )
    assert set(before) == set(after)
    for name, rec in before.items():
        if rec.type.startswith("libvirt:"):
            assert rec.plain_inputs == after[name].plain_inputs, f"{name} would change"
    changed = {n for n, r in commands(before).items() if r.plain_inputs != commands(after)[n].plain_inputs}
    assert "dev-slurm-controller-etc-slurm-slurm-conf" in changed
    assert "dev-slurm-controller-reconfigure" in changed
    # partitions and plain options are reconfigure-class: no daemon restart and no munge or DB step
    for untouched in (
        "dev-slurm-controller-munge",
        "dev-slurm-controller-accounting",
        "dev-slurm-cpu-01-munge",
        "dev-slurm-controller-slurmctld",
        "dev-slurm-cpu-01-slurmd",
        "dev-slurm-controller-etc-munge-munge-key",
    ):
        assert untouched not in changed, untouched


def test_node_change_restarts_daemons() -> None:
    before = commands(run(spec_with()))
    after = commands(run(spec_with(compute=[{"name": "cpu", "count": 2, "vcpus": 2, "memory_mib": 6144}])))
    for name in ("dev-slurm-controller-slurmctld", "dev-slurm-cpu-01-slurmd"):
        assert before[name].plain_inputs["triggers"] != after[name].plain_inputs["triggers"]


def test_secrets_are_secret_end_to_end() -> None:
    records = run(spec_with())
    cmds = commands(records)
    key_file = cmds["dev-slurm-controller-etc-munge-munge-key"]
    dbd_file = cmds["dev-slurm-controller-etc-slurm-slurmdbd-conf"]
    for rec in (key_file, dbd_file):
        assert contains_secret(rec.inputs["stdin"]) and contains_secret(rec.inputs["triggers"])
    assert "StoragePass=" in dbd_file.plain_inputs["stdin"]
    password = dbd_file.plain_inputs["stdin"].split("StoragePass=", 1)[1].split("\n", 1)[0]
    munge_key = key_file.plain_inputs["stdin"]
    assert len(password) == 32
    for rec in records.values():
        masked = repr(rec.masked_inputs)
        for secret in (PRIVATE_KEY.splitlines()[1], password, munge_key[:40]):
            assert secret not in masked, f"{rec.name} shows a secret"
        if rec.type == "command:remote:Command":
            assert contains_secret(rec.inputs["connection"]), f"{rec.name}: the connection carries the key"


def test_one_munge_key_for_the_whole_cluster() -> None:
    cmds = commands(run(spec_with()))
    keys = {r.plain_inputs["stdin"] for n, r in cmds.items() if n.endswith("-etc-munge-munge-key")}
    assert len(keys) == 1
    assert len(next(iter(keys))) == 172  # base64 of 128 bytes


def test_steps_wait_for_their_files_and_vms() -> None:
    records = run(spec_with())
    cmds = commands(records)
    urn = {n: r.urn for n, r in records.items()}
    slurmd = cmds["dev-slurm-cpu-01-slurmd"]
    for dep in (
        "dev-slurm-cpu-01-munge",
        "dev-slurm-controller-slurmctld",
        "dev-packages-cpu-01",
    ):
        assert urn[dep] in slurmd.depends_on, dep
    assert urn["dev-cpu-01-domain"] in slurmd.depends_on
    assert "readonly CONF_SERVER=10.77.0.10:6817" in slurmd.plain_inputs["stdin"]  # the step carries its script
    assert content_hash(slurmd.plain_inputs["stdin"]) in slurmd.plain_inputs["triggers"]
    reconfigure = cmds["dev-slurm-controller-reconfigure"]
    ctl_conf = cmds["dev-slurm-controller-etc-slurm-slurm-conf"]
    assert content_hash(ctl_conf.plain_inputs["stdin"]) in reconfigure.plain_inputs["triggers"]
    # configless: compute nodes get no SLURM configuration file
    assert not any(n.startswith("dev-slurm-cpu-01-etc-slurm-") for n in cmds)


def test_removing_or_replacing_a_node_drains_it_before_its_vm_goes() -> None:
    records = run(spec_with())
    member = commands(records)["dev-slurm-controller-member-cpu-02"]
    script = "/usr/local/libexec/hyperscaler/membership.sh"
    assert member.plain_inputs["delete"].endswith(f"{script} leave cpu-02'")  # through sudo -n sh -c
    assert member.plain_inputs["create"].endswith(f"{script} join cpu-02'")
    assert member.plain_inputs["connection"]["host"] == "10.77.0.10"  # runs on the controller
    domain = records["dev-cpu-02-domain"]
    assert domain.urn in member.depends_on  # deleted before the VM
    # The VM's id is in its triggers: when the domain is replaced (deleted first), the engine finds this
    # Command would be replaced too and deletes it, draining the node, before the domain.
    assert domain.urn in member.property_dependencies["triggers"]
    assert domain.delete_before_replace


def test_every_node_command_runs_again_on_a_new_vm() -> None:
    records = run(spec_with())
    for name, rec in commands(records).items():
        node = next(n for n in ("controller", "cpu-01", "cpu-02", "storage-01") if f"-{n}-" in name + "-")
        domain = records[f"dev-{node}-domain"].urn
        assert domain in rec.property_dependencies.get("triggers", []), f"{name} would not re-run on a new {node}"


def test_graph_depth_does_not_grow_with_node_count() -> None:
    def depth(records: dict[str, Registration]) -> int:
        by_urn = {r.urn: r for r in records.values()}
        memo: dict[str, int] = {}

        def d(urn: str) -> int:
            if urn not in memo:
                rec = by_urn[urn]
                memo[urn] = 1 + max((d(x) for x in rec.depends_on if x in by_urn), default=0)
            return memo[urn]

        return max(d(r.urn) for r in records.values())

    small = run(spec_with(compute=[{"name": "cpu", "count": 1, "vcpus": 1, "memory_mib": 1024}]))
    large = run(spec_with(compute=[{"name": "cpu", "count": 6, "vcpus": 1, "memory_mib": 1024}]))
    assert depth(small) == depth(large)


def test_packages_come_first_on_every_node() -> None:
    records = run(spec_with())
    cmds = commands(records)
    by_urn = {r.urn: r for r in records.values()}

    def waits_for(rec: Registration, urn: str) -> bool:
        seen, todo = set(), list(rec.depends_on)
        while todo:
            dep = todo.pop()
            if dep == urn:
                return True
            if dep not in seen and dep in by_urn:
                seen.add(dep)
                todo += by_urn[dep].depends_on
        return False

    for node in ("controller", "cpu-01", "cpu-02", "storage-01"):
        install = cmds[f"dev-packages-{node}"]
        assert "packages.sh" in install.plain_inputs["create"]
        for name, rec in cmds.items():
            if f"-{node}-" in name and not name.startswith("dev-packages-"):
                assert waits_for(rec, install.urn), f"{name} does not wait for the packages of {node}"
    script = cmds["dev-packages-controller"].plain_inputs["stdin"]  # each step carries its script
    assert "readonly PACKAGES='mariadb-server munge nfs-common slurm-client slurmctld slurmdbd'" in script


def test_a_script_change_never_replaces_a_membership_step() -> None:
    """A replaced Command runs its old delete: for a membership step that would drain a node that stays.
    Changing the drain timeout (an in-place setting) updates the pushed script and nothing else there."""
    before = commands(run(spec_with()))
    after = commands(run(spec_with(slurm={"drain_timeout_s": 60})))
    members = [n for n in before if "-member-" in n]
    assert members
    for name in members:
        assert before[name].plain_inputs == after[name].plain_inputs, name
    script = "dev-slurm-controller-usr-local-libexec-hyperscaler-membership-sh"
    assert before[script].plain_inputs["stdin"] != after[script].plain_inputs["stdin"]
