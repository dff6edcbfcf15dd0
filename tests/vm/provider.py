"""Create the libvirt objects a plan recorded, the way pulumi-libvirt 0.5.4 (terraform-provider-libvirt
0.8.1) would, on a namespaced libvirtd (tests/integration/libvirt_harness.py).

The real provider cannot be built here (docs/testing.md), so each step below is the provider's own
sequence, done with virsh; the source each one follows is named beside it. What is *not* emulated: the
engine's diffing, reads after create, and updates. Inputs are the recorded ones, untouched; the only
values resolved here are ids the mocks invented (network ids -> names, volume ids -> pool/volume,
cloud-init ids -> ISO path), exactly as the provider resolves the real ids.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.etree import ElementTree
from xml.sax.saxutils import escape, quoteattr

from hyperscaler.mocks import Registration, _uid
from tests.integration.libvirt_base_xml import provider_domain_xml, provider_network_xml
from tests.integration.libvirt_harness import CLEAN_ENV, HarnessError, Libvirtd, provider_xsltproc

POOL = "libvirt:index/pool:Pool"
VOLUME = "libvirt:index/volume:Volume"
CLOUDINIT = "libvirt:index/cloudInitDisk:CloudInitDisk"
NETWORK = "libvirt:index/network:Network"
DOMAIN = "libvirt:index/domain:Domain"


@dataclass
class Created:
    """What was created, newest last, so teardown can undo exactly that."""

    networks: list[str] = field(default_factory=list)
    pools: list[str] = field(default_factory=list)
    volumes: list[tuple[str, str]] = field(default_factory=list)  # (pool, volume)
    domains: list[str] = field(default_factory=list)


class ProviderEmulator:
    def __init__(
        self,
        lv: Libvirtd,
        records: list[Registration],
        scratch: Path,
    ) -> None:
        """Everything is created from the recorded inputs as they are: program output is never rewritten."""
        self.lv = lv
        self.records = records
        self.scratch = scratch
        self.created = Created()
        self.serial_logs: dict[str, Path] = {}
        self._readers: list[threading.Thread] = []
        # The mocks' network id is uuid5(type, resource name); the provider resolves a network_id to the
        # network's name (setNetworkInterfaces), so build the same map.
        self._network_names = {_uid(r.type, r.name): r.plain_inputs["name"] for r in records if r.type == NETWORK}

    def _virsh(self, *args: str, timeout: float = 120) -> str:
        rc, out = self.lv.virsh(*args, timeout=timeout)
        if rc != 0:
            raise HarnessError(f"virsh {' '.join(args)} failed: {out}")
        return out

    def _of(self, typ: str) -> list[Registration]:
        return [r for r in self.records if r.type == typ]

    # -- the resources, in the order the engine's dependency graph allows ---------------------------

    def create_all(self) -> None:
        for rec in self._of(NETWORK):
            self.network(rec.plain_inputs)
        for rec in self._of(POOL):
            self.pool(rec.plain_inputs)
        volumes = self._of(VOLUME)
        # Base images first: root volumes are overlays on them.
        for rec in sorted(volumes, key=lambda r: "baseVolumeId" in r.plain_inputs):
            self.volume(rec.plain_inputs)
        for rec in self._of(CLOUDINIT):
            self.cloudinit(rec.plain_inputs)
        for rec in self._of(DOMAIN):
            self.domain(rec.plain_inputs)

    def network(self, inputs: dict[str, Any]) -> None:
        # resourceLibvirtNetworkCreate: build XML, transformResourceXML (xml.xslt), NetworkDefineXML,
        # NetworkCreate, then NetworkSetAutostart when autostart is set.
        dns = inputs.get("dns") or {}
        xml = provider_network_xml(
            name=inputs["name"],
            mode=inputs.get("mode", "nat"),
            domain=inputs.get("domain", ""),
            local_only=bool(dns.get("localOnly")),
            bridge=inputs.get("bridge", ""),
            mtu=int(inputs["mtu"]) if inputs.get("mtu") else None,
            addresses=inputs.get("addresses") or (),
            dhcp_enabled=(inputs.get("dhcp") or {}).get("enabled"),
            dns_enabled=bool(dns.get("enabled")),
            dns_hosts=[(h["hostname"], h["ip"]) for h in dns.get("hosts") or ()],
        )
        xml = self._xslt(inputs, xml)
        self._virsh("net-define", str(self._file(f"net-{inputs['name']}.xml", xml)))
        self.created.networks.append(inputs["name"])
        self._virsh("net-start", inputs["name"])
        if inputs.get("autostart"):
            self._virsh("net-autostart", inputs["name"])

    def pool(self, inputs: dict[str, Any]) -> None:
        # resourceLibvirtPoolCreate: StoragePoolDefineXML(<pool type=dir><name/><target><path/>),
        # StoragePoolBuild, StoragePoolCreate, StoragePoolSetAutostart(true).
        path = inputs["target"]["path"]
        xml = f"<pool type={quoteattr(inputs['type'])}><name>{escape(inputs['name'])}</name>"
        xml += f"<target><path>{escape(path)}</path></target></pool>"
        self._virsh("pool-define", str(self._file(f"pool-{inputs['name']}.xml", xml)))
        self.created.pools.append(inputs["name"])
        self._virsh("pool-build", inputs["name"])
        self._virsh("pool-start", inputs["name"])
        self._virsh("pool-autostart", inputs["name"])

    def volume(self, inputs: dict[str, Any]) -> None:
        pool, name, fmt = inputs["pool"], inputs["name"], inputs.get("format", "qcow2")
        if inputs.get("source"):
            # resourceLibvirtVolumeCreate with `source`: StorageVolCreateXML sized as the image file,
            # then the image is streamed in (newCopier -> StorageVolUpload).
            source = Path(inputs["source"])
            self._virsh("vol-create-as", pool, name, str(source.stat().st_size), "--format", fmt)
            self.created.volumes.append((pool, name))
            self._virsh("vol-upload", "--pool", pool, name, str(source), timeout=600)
            self._virsh("pool-refresh", pool)
        elif inputs.get("baseVolumeId"):
            # with `base_volume_id`: a volume of `size` whose backingStore is the base volume's path,
            # in the base volume's format.
            base = inputs["baseVolumeId"]
            self._virsh(
                "vol-create-as", pool, name, str(int(inputs["size"])), "--format", fmt,
                "--backing-vol", base, "--backing-vol-format", self._volume_format(pool, base),
            )  # fmt: skip
            self.created.volumes.append((pool, name))
        else:
            # an empty volume of `size`.
            self._virsh("vol-create-as", pool, name, str(int(inputs["size"])), "--format", fmt)
            self.created.volumes.append((pool, name))

    def cloudinit(self, inputs: dict[str, Any]) -> None:
        # defCloudInit.createISO: user-data, meta-data and network-config (always all three, empty when
        # unset) in a temp dir, `mkisofs -output <name> -volid cidata -joliet -rock <the three files>`;
        # UploadIso: StorageVolCreateXML (raw, capacity = ISO size) + upload.
        pool, name = inputs["pool"], inputs["name"]
        with tempfile.TemporaryDirectory(prefix="cloudinit", dir=self.scratch) as tmp:
            files = []
            for file_name, key in (
                ("user-data", "userData"),
                ("meta-data", "metaData"),
                ("network-config", "networkConfig"),
            ):
                text = inputs.get(key) or ""
                path = Path(tmp) / file_name
                path.write_text(text)
                files.append(str(path))
            iso = Path(tmp) / name
            argv = ["genisoimage", "-quiet", "-output", str(iso), "-volid", "cidata", "-joliet", "-rock", *files]
            proc = subprocess.run(argv, capture_output=True, text=True, env=CLEAN_ENV, check=False, timeout=60)
            if proc.returncode != 0:
                raise HarnessError(f"genisoimage failed: {proc.stderr}")
            self._virsh("vol-create-as", pool, name, str(iso.stat().st_size), "--format", "raw")
            self.created.volumes.append((pool, name))
            self._virsh("vol-upload", "--pool", pool, name, str(iso))

    def domain(self, inputs: dict[str, Any]) -> None:
        name = inputs["name"]
        disks = [d["volumeId"] for d in inputs.get("disks") or ()]
        pools = {self._pool_of(path) for path in disks}
        if len(pools) > 1:
            raise HarnessError(f"{name}: disks in several pools ({pools}); provider_domain_xml takes one")
        interfaces = inputs.get("networkInterfaces") or ()
        networks = [self._network_names[i["networkId"]] for i in interfaces]
        # setNetworkInterfaces, before define: on a network with DHCP, every given address becomes a DHCP
        # host entry (updateOrAddHost: NetworkUpdate add/modify ip-dhcp-host, live + config).
        for iface, network in zip(interfaces, networks, strict=True):
            if iface.get("addresses") and self._has_dhcp(network):
                host_name = iface.get("hostname") or name
                for address in iface["addresses"]:
                    host = f"<host mac={quoteattr(iface['mac'].upper())} name={quoteattr(host_name)} "
                    host += f"ip={quoteattr(address)}/>"
                    self._virsh("net-update", network, "add-last", "ip-dhcp-host", host, "--live", "--config")
        cpu_mode = (inputs.get("cpu") or {}).get("mode", "")
        xml = provider_domain_xml(
            name=name,
            domain_type=inputs.get("type", "kvm"),
            vcpu=int(inputs["vcpu"]),
            memory_mib=int(inputs["memory"]),
            mac_addresses=[i["mac"] for i in interfaces],
            network_names=networks,
            disk_paths=disks,
            disk_pool=pools.pop() if pools else "default",
            cloudinit_iso=str(inputs.get("cloudinit") or "").split(";", 1)[0],
            firmware=inputs.get("firmware") or "",
            nvram_file=(inputs.get("nvram") or {}).get("file", ""),
            nvram_template=(inputs.get("nvram") or {}).get("template", ""),
            machine=self.lv.canonical_machine(inputs.get("machine") or "pc"),
            cpu_mode=cpu_mode,
            arch=inputs.get("arch", ""),
            description=inputs.get("description", ""),
            kernel=inputs.get("kernel", ""),
            initrd=inputs.get("initrd", ""),
            cmdlines=inputs.get("cmdlines") or (),
        )
        xml = self._xslt(inputs, xml)
        # DomainDefineXML without validation, DomainSetAutostart, DomainCreate (running defaults true).
        self._virsh("define", str(self._file(f"domain-{name}.xml", xml)))
        self.created.domains.append(name)
        if inputs.get("autostart"):
            self._virsh("autostart", name)
        if inputs.get("running", True):
            self._virsh("start", name)
            self._capture_serial(name)

    # -- teardown ----------------------------------------------------------------------------------

    def destroy_all(self) -> list[str]:
        """Undo everything created, newest first; returns the errors instead of stopping at one."""
        errors = []
        for name in reversed(self.created.domains):
            self.lv.virsh("destroy", name)  # a stopped domain answers rc 1: fine
            rc, out = self.lv.virsh("undefine", name)
            if rc != 0:
                errors.append(out)
        for pool, volume in reversed(self.created.volumes):
            rc, out = self.lv.virsh("vol-delete", "--pool", pool, volume)
            if rc != 0:
                errors.append(out)
        for pool in reversed(self.created.pools):
            self.lv.virsh("pool-destroy", pool)
            rc, out = self.lv.virsh("pool-undefine", pool)
            if rc != 0:
                errors.append(out)
        for network in reversed(self.created.networks):
            self.lv.virsh("net-destroy", network)
            rc, out = self.lv.virsh("net-undefine", network)
            if rc != 0:
                errors.append(out)
        self.created = Created()
        for reader in self._readers:
            reader.join(timeout=5)
        return errors

    # -- helpers -------------------------------------------------------------------------------------

    def _xslt(self, inputs: dict[str, Any], xml: str) -> str:
        # transformResourceXML: only when xml.xslt is set.
        xslt = (inputs.get("xml") or {}).get("xslt")
        if not xslt:
            return xml
        rc, out = provider_xsltproc(xslt, xml)
        if rc != 0:
            raise HarnessError(f"xsltproc failed for {inputs.get('name')}: {out}")
        return out

    def _file(self, name: str, text: str) -> Path:
        path = self.scratch / name  # absolute: nsenter --mount resets the cwd
        path.write_text(text)
        return path

    def _pool_of(self, volume_path: str) -> str:
        # The provider looks a volume_id (its key: the path) up with StorageVolLookupByKey and writes
        # <source pool= volume=>.
        return self._virsh("vol-pool", volume_path).strip()

    def _volume_format(self, pool: str, path: str) -> str:
        root = ElementTree.fromstring(self._virsh("vol-dumpxml", path))
        fmt = root.find("target/format")
        return fmt.get("type", "raw") if fmt is not None else "raw"

    def _has_dhcp(self, network: str) -> bool:
        root = ElementTree.fromstring(self._virsh("net-dumpxml", network))
        return root.find("ip/dhcp") is not None

    def _capture_serial(self, name: str) -> None:
        """Copy the guest's serial console (the provider's pty console) into a log, for diagnosis."""
        root = ElementTree.fromstring(self._virsh("dumpxml", name))
        source = root.find("devices/console/source")
        pty = source.get("path") if source is not None else None
        if not pty:
            return
        log = self.scratch / f"serial-{name}.log"
        self.serial_logs[name] = log

        def pump() -> None:
            try:
                fd = os.open(pty, os.O_RDONLY | os.O_NOCTTY)
            except OSError:
                return
            with open(log, "ab") as out:
                while True:
                    try:
                        chunk = os.read(fd, 65536)
                    except OSError:  # the pty goes away with the domain
                        break
                    if not chunk:
                        break
                    out.write(chunk)
                    out.flush()
            os.close(fd)

        reader = threading.Thread(target=pump, name=f"serial-{name}", daemon=True)
        reader.start()
        self._readers.append(reader)
