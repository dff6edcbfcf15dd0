"""Monitoring without running it: the settings and their checks, Grafana's provisioning files against the
keys Grafana documents, what the containers would mount, and the canary's metric on success and failure
(the canary script run by bash over stand-in SLURM commands)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any, Literal

import pytest
import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from config import ConfigError, build_spec
from config.load import RECEIVER_SECRET_KEY, StackInputs, read_stack_file
from config.topology import plan_nodes
from render.grafana import (
    ADMIN_PASSWORD_FILE,
    DATASOURCE_UID,
    IN_DASHBOARDS,
    IN_PROVISIONING,
    dashboards,
    dcgm_exporter_container,
    grafana_container,
    grafana_endpoint,
    grafana_files,
    render_dashboard_provider_yml,
    render_datasource_yml,
)
from render.monitoring import endpoint, render_alertmanager_yml
from render.remote import SLURM_INCLUDES, render_script
from render.slurm import controller
from tests.stacks import ROOT, loaded

WORKSTATION = ROOT / "Pulumi.workstation.yaml"


def inputs_with(tmp_path: Path, monitoring: dict[str, Any], secret: bool = False) -> StackInputs:
    doc = yaml.safe_load(WORKSTATION.read_text())
    doc["config"]["hyperscaler:cluster"]["monitoring"] = {"enabled": True, **monitoring}
    if secret:
        doc["config"][RECEIVER_SECRET_KEY] = {"secure": "v1:AAAA"}
    path = tmp_path / "Pulumi.t.yaml"
    path.write_text(yaml.safe_dump(doc))
    return read_stack_file(path)


def findings(tmp_path: Path, monitoring: dict[str, Any], secret: bool = False) -> str:
    with pytest.raises(ConfigError) as info:
        build_spec(inputs_with(tmp_path, monitoring, secret))
    return info.value.report()


EMAIL = {"to": ["ops@example.com"], "sender": "am@example.com", "smarthost": "smtp.example.com:587"}


def test_the_defaults_alert_nobody_and_listen_on_loopback() -> None:
    spec = loaded("workstation").spec
    assert spec.monitoring.enabled and spec.monitoring.alerts.receiver == "none"
    assert "receivers:\n- name: none\n" in render_alertmanager_yml(spec)
    ctl = controller(plan_nodes(spec))
    assert grafana_container(spec, ctl).env["GF_SERVER_HTTP_ADDR"] == "127.0.0.1"
    assert grafana_endpoint(spec, ctl).tunnel == f"ssh -N -L 3000:127.0.0.1:3000 hpcadmin@{ctl.mgmt_ip}"
    assert not loaded("dev").spec.monitoring.enabled


def test_exposing_grafana_is_explicit(tmp_path: Path) -> None:
    spec = build_spec(inputs_with(tmp_path, {"grafana": {"expose": True, "port": 3001}})).spec
    ctl = controller(plan_nodes(spec))
    assert grafana_container(spec, ctl).env["GF_SERVER_HTTP_ADDR"] == ctl.mgmt_ip
    assert grafana_endpoint(spec, ctl).url == f"http://{ctl.mgmt_ip}:3001/"


def test_a_receiver_needs_its_settings_and_unused_settings_are_refused(tmp_path: Path) -> None:
    assert "monitoring.alerts.email: receiver is email, but monitoring.alerts.email is not set" in findings(
        tmp_path, {"alerts": {"receiver": "email"}}
    )
    assert "monitoring.alerts.email: the email settings would do nothing: receiver is none" in findings(
        tmp_path, {"alerts": {"email": EMAIL}}
    )


def test_a_login_needs_the_receiver_secret_and_never_puts_it_in_the_file(tmp_path: Path) -> None:
    login = {"alerts": {"receiver": "email", "email": {**EMAIL, "auth_username": "am"}}}
    assert f"{RECEIVER_SECRET_KEY} is not set" in findings(tmp_path, login)
    spec = build_spec(inputs_with(tmp_path, login, secret=True)).spec
    text = render_alertmanager_yml(spec)
    assert "auth_password_file: /etc/prometheus/alert-receiver-secret" in text and "auth_password:" not in text


def test_an_unused_receiver_secret_is_a_warning(tmp_path: Path) -> None:
    loaded_stack = build_spec(inputs_with(tmp_path, {}, secret=True))
    assert any(RECEIVER_SECRET_KEY in w.message and not w.is_error for w in loaded_stack.warnings)


def test_a_plain_receiver_secret_is_refused(tmp_path: Path) -> None:
    doc = yaml.safe_load(WORKSTATION.read_text())
    doc["config"][RECEIVER_SECRET_KEY] = "hunter2"
    path = tmp_path / "Pulumi.t.yaml"
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(ConfigError, match="stored in plain text"):
        read_stack_file(path)


@pytest.mark.parametrize(
    "url",
    ["https://user:s3cr3t@hooks.example.com/x", "ftp://hooks.example.com/x", "https://hooks.example.com/a b"],
)
def test_webhook_urls_carry_no_credentials(tmp_path: Path, url: str) -> None:
    report = findings(tmp_path, {"alerts": {"receiver": "webhook", "webhook": {"url": url}}})
    assert "monitoring.alerts.webhook.url" in report
    assert "s3cr3t" not in report  # an error message never repeats a credential


def test_prometheus_must_fit_on_the_state_volume(tmp_path: Path) -> None:
    assert "monitoring.retention_size_gib" in findings(tmp_path, {"retention_size_gib": 10})  # state volume: 10 GiB
    spec = build_spec(inputs_with(tmp_path, {"retention_size_gib": 4})).spec
    assert spec.monitoring.retention_size_gib == 4


def test_grafana_cannot_take_a_port_in_use(tmp_path: Path) -> None:
    assert "monitoring.grafana.port: port 9090 is already used on the controller" in findings(
        tmp_path, {"grafana": {"port": 9090}}
    )


def test_tunnels_go_through_the_jump_host_when_there_is_one() -> None:
    spec = loaded("workstation").spec
    hv_key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEWwoQJm5BAL1DlfU575U2gWJDQ8/y+UHR9nMWDIG8eR"
    hosts = [h.model_copy(update={"uri": "qemu+ssh://root@ws1/system", "ssh_host_key": hv_key}) for h in spec.hosts]
    remote = spec.model_copy(update={"hosts": hosts})
    ctl = controller(plan_nodes(remote))
    assert endpoint(remote, ctl, 9090).tunnel == f"ssh -N -L 9090:127.0.0.1:9090 -J root@ws1 hpcadmin@{ctl.mgmt_ip}"


# Grafana 11.6's provisioning formats, from its documentation ("Provision Grafana": data sources and
# dashboard providers, apiVersion 1): every key the file formats define, nothing else.
class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DataSource(_Strict):
    name: str
    type: str
    access: Literal["proxy", "direct"] | None = None
    orgId: int | None = None  # noqa: N815 (Grafana's key)
    uid: str | None = None
    url: str | None = None
    user: str | None = None
    database: str | None = None
    basicAuth: bool | None = None  # noqa: N815
    basicAuthUser: str | None = None  # noqa: N815
    withCredentials: bool | None = None  # noqa: N815
    isDefault: bool | None = None  # noqa: N815
    jsonData: dict[str, Any] | None = None  # noqa: N815
    secureJsonData: dict[str, str] | None = None  # noqa: N815
    version: int | None = None
    editable: bool | None = None


class DataSources(_Strict):
    apiVersion: Literal[1]  # noqa: N815
    deleteDatasources: list[dict[str, Any]] | None = None  # noqa: N815
    prune: bool | None = None
    datasources: list[DataSource]


class ProviderOptions(_Strict):
    path: str
    foldersFromFilesStructure: bool | None = None  # noqa: N815


class Provider(_Strict):
    name: str
    orgId: int | None = None  # noqa: N815
    folder: str | None = None
    folderUid: str | None = None  # noqa: N815
    type: Literal["file"]
    disableDeletion: bool | None = None  # noqa: N815
    updateIntervalSeconds: int | None = None  # noqa: N815
    allowUiUpdates: bool | None = None  # noqa: N815
    options: ProviderOptions


class Providers(_Strict):
    apiVersion: Literal[1]  # noqa: N815
    providers: list[Provider]


def test_grafana_provisioning_uses_only_documented_keys() -> None:
    spec = loaded("workstation").spec
    sources = DataSources.model_validate(yaml.safe_load(render_datasource_yml(spec)))
    providers = Providers.model_validate(yaml.safe_load(render_dashboard_provider_yml()))
    assert [s.uid for s in sources.datasources] == [DATASOURCE_UID]
    assert sources.datasources[0].url == "http://127.0.0.1:9090"  # Grafana shares the controller's network
    assert providers.providers[0].options.path == IN_DASHBOARDS


def test_the_provisioning_check_catches_a_misspelt_key() -> None:
    doc = yaml.safe_load(render_datasource_yml(loaded("workstation").spec))
    doc["datasources"][0]["isDefualt"] = True
    with pytest.raises(ValidationError, match="isDefualt"):
        DataSources.model_validate(doc)


def test_every_dashboard_queries_the_provisioned_data_source() -> None:
    for name, text in dashboards(loaded("workstation").spec).items():
        refs = {str(ref) for ref in _datasource_refs(yaml.safe_load(text))}
        assert refs == {str({"type": "prometheus", "uid": DATASOURCE_UID})}, name


def _datasource_refs(node: Any) -> list[Any]:
    if isinstance(node, dict):
        found = [node["datasource"]] if "datasource" in node else []
        return found + [r for k, v in node.items() if k != "datasource" for r in _datasource_refs(v)]
    if isinstance(node, list):
        return [r for item in node for r in _datasource_refs(item)]
    return []


def test_the_grafana_container_mounts_what_is_pushed_and_holds_no_secret() -> None:
    spec = loaded("workstation").spec
    ctl = controller(plan_nodes(spec))
    container = grafana_container(spec, ctl)
    pushed = {f.path for f in grafana_files(spec)} | {ADMIN_PASSWORD_FILE}
    assert set(container.files) == pushed
    for mount in container.mounts:
        covered = any(p == mount.source or p.startswith(mount.source + "/") for p in pushed)
        made = any(mount.source == d for d, _, _ in container.host_dirs)
        assert covered or made, mount
    targets = {m.target for m in container.mounts}
    assert {IN_PROVISIONING, IN_DASHBOARDS} <= targets
    assert container.env["GF_SECURITY_ADMIN_PASSWORD__FILE"] in targets
    assert not any("PASSWORD" in k and not k.endswith("__FILE") for k in container.env)
    assert container.network_mode == "host"


def test_the_dcgm_exporter_listens_on_the_scraped_address() -> None:
    spec = loaded("workstation").spec
    gpu = next(n for n in plan_nodes(spec) if n.gpus)
    container = dcgm_exporter_container(gpu)
    assert container.command[container.command.index("-a") + 1] == f"{gpu.mgmt_ip}:9400"
    counters = container.command[container.command.index("-f") + 1]
    assert [m.target for m in container.mounts] == [counters] and container.gpus == "all"


def run_canary(tmp_path: Path, sinfo_states: str, srun_fails: bool) -> subprocess.CompletedProcess[str]:
    """The canary's own body (render/scripts/canary.sh) with stand-ins for sinfo, srun and scontrol."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fakes = {
        "sinfo": f"echo {sinfo_states}",
        "srun": "exit 1" if srun_fails else "echo n1",
        "scontrol": "echo n1",
    }
    for name, body in fakes.items():
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(0o755)
    metrics = tmp_path / "textfile" / "hyperscaler-canary.prom"
    params = {"COMPUTE_NODES": "n1", "GPU_TYPES": "", "GPU_PARTITION": "", "CANARY_TIMEOUT": 1, "SHARED_DIR": ""}
    script = tmp_path / "canary.sh"
    script.write_text(render_script("canary", {**params, "CANARY_METRICS": metrics}, SLURM_INCLUDES).content)
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}")
    return subprocess.run(["bash", str(script)], capture_output=True, text=True, env=env, timeout=60)


def canary_success(tmp_path: Path) -> str:
    text = (tmp_path / "textfile" / "hyperscaler-canary.prom").read_text()
    assert "# TYPE hyperscaler_canary_success gauge" in text
    return text.splitlines()[-1]


def test_a_passing_canary_records_success(tmp_path: Path) -> None:
    result = run_canary(tmp_path, "idle", srun_fails=False)
    assert result.returncode == 0, result.stderr
    assert canary_success(tmp_path) == "hyperscaler_canary_success 1"


def test_a_canary_on_an_idle_node_that_cannot_run_a_job_records_failure(tmp_path: Path) -> None:
    result = run_canary(tmp_path, "idle", srun_fails=True)
    assert result.returncode != 0 and "could not run a job" in result.stderr
    assert canary_success(tmp_path) == "hyperscaler_canary_success 0"


def test_a_canary_that_times_out_records_failure(tmp_path: Path) -> None:
    result = run_canary(tmp_path, "down", srun_fails=False)
    assert result.returncode != 0 and "not ready after 1s" in result.stderr
    assert canary_success(tmp_path) == "hyperscaler_canary_success 0"


def test_without_monitoring_the_canary_writes_no_metric() -> None:
    from render.slurm_deploy import canary_metrics

    assert canary_metrics(loaded("dev").spec) == ""
    assert canary_metrics(loaded("workstation").spec).endswith("/hyperscaler-canary.prom")


def test_the_slurm_collector_reports_an_unreachable_slurmctld(tmp_path: Path) -> None:
    """sinfo failing (slurmctld down): slurm_up 0 and nothing stale beside it (alert SlurmControllerUnreachable)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("sinfo", "squeue", "scontrol"):
        (bin_dir / name).write_text(
            "#!/bin/sh\necho 'slurm_load_partitions: Unable to contact slurm controller' >&2\nexit 1\n"
        )
        (bin_dir / name).chmod(0o755)
    metrics = tmp_path / "textfile" / "slurm.prom"
    script = tmp_path / "slurm-metrics.sh"
    script.write_text(render_script("slurm-metrics", {"METRICS_FILE": metrics, "INTERVAL": 30}).content)
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}")
    result = subprocess.run(["bash", str(script), "collect"], capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    assert metrics.read_text().splitlines()[-1] == "slurm_up 0"
    assert "slurm_node_state" not in metrics.read_text()


def test_the_plan_masks_the_receiver_secret_and_says_so(tmp_path: Path) -> None:
    from hyperscaler.mocks import SECRET_MASK
    from hyperscaler.plan import run_plan, summary
    from render.monitoring import RECEIVER_SECRET_FILE

    doc = yaml.safe_load(WORKSTATION.read_text())
    hook = {"receiver": "webhook", "webhook": {"url": "https://hooks.example.com/x", "bearer_token": True}}
    doc["config"]["hyperscaler:cluster"]["monitoring"] = {"enabled": True, "alerts": hook}
    doc["config"][RECEIVER_SECRET_KEY] = {"secure": "v1:AAAA"}
    path = tmp_path / "Pulumi.ws.yaml"
    path.write_text(yaml.safe_dump(doc))
    result = run_plan(path)
    assert result.files["controller"][RECEIVER_SECRET_FILE] == SECRET_MASK
    assert "planned as masked placeholders" in summary(result)


def test_the_storage_alert_watches_the_backends_own_units() -> None:
    from render.monitoring import alert_groups, storage_units

    def storage_rules(stack: str, **storage: object) -> list[str]:
        spec = loaded(stack).spec
        assert spec.storage is not None
        spec = spec.model_copy(update={"storage": spec.storage.model_copy(update=storage)})
        return [str(r["expr"]) for g in alert_groups(spec) if g["name"] == "storage" for r in g["rules"]]

    assert storage_rules("workstation") == [
        "node_systemd_unit_state{name=~`beegfs\\-client\\.service|beegfs\\-meta\\.service|beegfs\\-mgmtd\\.service|"
        'beegfs\\-storage\\.service`, state="active"} == 0'
    ]
    assert storage_rules("workstation", backend="nfs") == [
        'node_systemd_unit_state{name=~`nfs\\-server\\.service`, state="active"} == 0'
    ]
    assert storage_rules("workstation", count=0) == [] and storage_units(loaded("dev").spec)
