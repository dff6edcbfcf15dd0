package main

// The XML terraform-provider-libvirt 0.8.1 (bridged by pulumi-libvirt 0.5.4) writes for a Domain and a
// Network, built with the provider's own XML library (libvirt.org/go/libvirtxml) field by field as the
// provider builds it, then serialised as xmlMarshallIndented does (encoding/xml, Indent("  ", "    "))
// and transformed by `xml.xslt` (transformXML). This is hyperscaler's one copy of these conventions:
// tests/integration/test_domain_define.py asks this binary for them (`domain-xml`), it does not keep its
// own.
//
// Sources (dmacvicar/terraform-provider-libvirt, the go-libvirt based v0.8 line; the v0.8.1 tag's commit
// could not be pinned in the code index, the paths below read the same before and after it):
//   - libvirt/domain_def.go newDomainDef: os/type hvm; features pae, acpi, apic; an empty <cpu>; a
//     qemu-ga channel (unix, virtio, org.qemu.guest_agent.0); a virtio rng backed by $TF_LIBVIRT_RNG_DEV
//     or /dev/urandom. newDomainDefForConnection: arch from `arch` (else the host's), machine from
//     `machine`, made canonical from the host capabilities (getCanonicalMachineName: q35 -> pc-q35-7.2
//     on QEMU 7.2).
//   - libvirt/resource_libvirt_domain.go resourceLibvirtDomainCreate: name; cpu.mode when given;
//     memory in MiB; vcpu without placement; description; kernel, initrd and arch as given; emulator as
//     given (empty: none, libvirt picks it); type (default kvm); then setConsoles, setCmdlineArgs,
//     setFirmware, setDisks, setCloudinit, setNetworkInterfaces (libvirt/domain.go).
//   - libvirt/domain.go: setCmdlineArgs writes every map of `cmdlines` as k=v (key "_": the bare value),
//     sorts them all and joins them with a space; setFirmware writes <loader readonly="yes" secure="no"
//     type="pflash"> and <nvram template=...>file</nvram> only when firmware is set; setConsoles gives a
//     pty console without source_path no <source> (so no type attribute); setDisks turns a volume_id into
//     <disk type="volume" device="disk"> with <source pool= volume=>, target vd<letter> on virtio and a
//     driver qemu + the volume's format (qcow2 or raw); newDiskForCloudInit makes the cloud-init ISO a
//     cdrom: file source, driver raw, target hdd on ide, serial "cloudinit"; setNetworkInterfaces gives
//     <interface type="network"> with the MAC upper-cased, source network = the network's name (a
//     network_id is resolved by UUID) and model virtio.
//   - libvirt/resource_libvirt_network.go resourceLibvirtNetworkCreate with network.go and
//     network_dns.go: see networkDef below.
//
// What the double does not build and refuses in Check: graphics, video, filesystems, TPM, boot devices,
// CoreOS ignition/combustion, emulator, metadata, disks by url/file/block device or on SCSI, interfaces
// by bridge/macvtap/vepa/passthrough or network name, consoles other than pty, wait_for_lease.

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"net"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"

	"libvirt.org/go/libvirtxml"

	"hyperscaler/e2e/doubles/internal/rpc"
)

// resolver answers what the provider asks libvirt while it builds the XML.
type resolver interface {
	// volume looks a volume up by key (its id): pool name, volume name, format.
	volume(key string) (pool, name, format string, err error)
	// volumePath is StorageVolGetPath of the volume with that key.
	volumePath(key string) (string, error)
	// network looks a network up by UUID (its id): its name and whether libvirt runs DHCP on it (HasDHCP).
	network(uuid string) (name string, dhcp bool, err error)
	// canonicalMachine resolves a machine alias through the host capabilities.
	canonicalMachine(arch, machine string) (string, error)
	// hostArch is the host's architecture (capabilities host/cpu/arch).
	hostArch() (string, error)
}

// dhcpHost is an address a domain's interface gives, to be written into its network's DHCP hosts.
type dhcpHost struct {
	networkID, ip, mac, hostname string
}

var domainInputs = []string{"name", "description", "type", "machine", "arch", "vcpu", "memory", "cpu",
	"firmware", "nvram", "kernel", "initrd", "cmdlines", "disks", "cloudinit", "networkInterfaces",
	"consoles", "qemuAgent", "autostart", "running", "xml"}

func checkDomain(in map[string]any) error {
	if err := rpc.Unexpected(in, domainInputs...); err != nil {
		return err
	}
	for i, d := range rpc.List(in, "disks") {
		disk, _ := d.(map[string]any)
		if err := rpc.Unexpected(disk, "volumeId", "scsi"); err != nil {
			return fmt.Errorf("disks[%d]: %w", i, err)
		}
		if rpc.Bool(disk, "scsi", false) {
			return fmt.Errorf("disks[%d]: SCSI disks are not reproduced", i)
		}
	}
	for i, n := range rpc.List(in, "networkInterfaces") {
		nic, _ := n.(map[string]any)
		if err := rpc.Unexpected(nic, "networkId", "mac", "hostname", "addresses", "waitForLease"); err != nil {
			return fmt.Errorf("networkInterfaces[%d]: %w", i, err)
		}
		if rpc.Bool(nic, "waitForLease", false) {
			return fmt.Errorf("networkInterfaces[%d]: waitForLease (waiting for a DHCP lease) is not reproduced", i)
		}
	}
	for i, c := range rpc.List(in, "consoles") {
		console, _ := c.(map[string]any)
		if err := rpc.Unexpected(console, "type", "targetPort", "targetType"); err != nil {
			return fmt.Errorf("consoles[%d]: %w", i, err)
		}
		if t := rpc.Str(console, "type"); t != "pty" {
			return fmt.Errorf("consoles[%d]: only pty consoles are reproduced, not %q", i, t)
		}
	}
	if rpc.Bool(in, "qemuAgent", false) {
		return fmt.Errorf("qemuAgent (addresses read through the guest agent) is not reproduced")
	}
	if err := rpc.Unexpected(rpc.Obj(in, "cpu"), "mode"); err != nil {
		return fmt.Errorf("cpu: %w", err)
	}
	if err := rpc.Unexpected(rpc.Obj(in, "nvram"), "file", "template"); err != nil {
		return fmt.Errorf("nvram: %w", err)
	}
	if err := rpc.Unexpected(rpc.Obj(in, "xml"), "xslt"); err != nil {
		return fmt.Errorf("xml: %w", err)
	}
	return nil
}

// diskLetterForIndex: a..z, then aa, ab, ...
func diskLetterForIndex(i int) string {
	const letters = "abcdefghijklmnopqrstuvwxyz"
	q, r := i/len(letters), i%len(letters)
	if q == 0 {
		return string(letters[r])
	}
	return diskLetterForIndex(q-1) + string(letters[r])
}

func intOr(in map[string]any, key string, def uint) uint {
	if n, ok := rpc.Num(in, key); ok {
		return uint(n)
	}
	return def
}

// cmdline follows setCmdlineArgs.
func cmdline(cmdlines []any) string {
	var args []string
	for _, entry := range cmdlines {
		m, _ := entry.(map[string]any)
		for k, v := range m {
			if k == "_" {
				args = append(args, fmt.Sprint(v))
			} else {
				args = append(args, fmt.Sprintf("%s=%v", k, v))
			}
		}
	}
	sort.Strings(args)
	return strings.Join(args, " ")
}

// cloudinitDisk follows newDiskForCloudInit: the volume key is the part of the CloudInitDisk id
// before ";" (getCloudInitVolumeKeyFromTerraformID).
func cloudinitDisk(r resolver, id string) (libvirtxml.DomainDisk, error) {
	key, _, ok := strings.Cut(id, ";")
	if !ok {
		return libvirtxml.DomainDisk{}, fmt.Errorf("%s is not a valid key", id)
	}
	path, err := r.volumePath(key)
	if err != nil {
		return libvirtxml.DomainDisk{}, fmt.Errorf("can't retrieve volume %s: %w", key, err)
	}
	return libvirtxml.DomainDisk{
		Serial: "cloudinit",
		Device: "cdrom",
		Target: &libvirtxml.DomainDiskTarget{Dev: "hdd", Bus: "ide"},
		Driver: &libvirtxml.DomainDiskDriver{Name: "qemu", Type: "raw"},
		Source: &libvirtxml.DomainDiskSource{File: &libvirtxml.DomainDiskSourceFile{File: path}},
	}, nil
}

// domainDef builds the domain the provider defines, and the DHCP host entries setNetworkInterfaces
// writes before the define.
func domainDef(in map[string]any, r resolver) (*libvirtxml.Domain, []dhcpHost, error) {
	rng := os.Getenv("TF_LIBVIRT_RNG_DEV")
	if rng == "" {
		rng = "/dev/urandom"
	}
	d := &libvirtxml.Domain{
		OS:       &libvirtxml.DomainOS{Type: &libvirtxml.DomainOSType{Type: "hvm"}},
		CPU:      &libvirtxml.DomainCPU{},
		Features: &libvirtxml.DomainFeatureList{PAE: &libvirtxml.DomainFeature{}, ACPI: &libvirtxml.DomainFeature{}, APIC: &libvirtxml.DomainFeatureAPIC{}},
		Devices: &libvirtxml.DomainDeviceList{
			Channels: []libvirtxml.DomainChannel{{
				Source: &libvirtxml.DomainChardevSource{UNIX: &libvirtxml.DomainChardevSourceUNIX{}},
				Target: &libvirtxml.DomainChannelTarget{VirtIO: &libvirtxml.DomainChannelTargetVirtIO{Name: "org.qemu.guest_agent.0"}},
			}},
			RNGs: []libvirtxml.DomainRNG{{
				Model:   "virtio",
				Backend: &libvirtxml.DomainRNGBackend{Random: &libvirtxml.DomainRNGBackendRandom{Device: rng}},
			}},
		},
	}
	// newDomainDefForConnection
	arch := rpc.Str(in, "arch")
	if arch == "" {
		var err error
		if arch, err = r.hostArch(); err != nil {
			return nil, nil, err
		}
	}
	machine := rpc.Str(in, "machine")
	if machine == "" {
		return nil, nil, fmt.Errorf("a Domain without `machine` (the host's default machine type) is not reproduced")
	}
	canonical, err := r.canonicalMachine(arch, machine)
	if err != nil {
		return nil, nil, err
	}
	d.OS.Type.Machine = canonical
	// resourceLibvirtDomainCreate
	d.Name = rpc.Str(in, "name")
	if mode := rpc.Str(rpc.Obj(in, "cpu"), "mode"); mode != "" {
		d.CPU = &libvirtxml.DomainCPU{Mode: mode}
	}
	d.Memory = &libvirtxml.DomainMemory{Value: intOr(in, "memory", 512), Unit: "MiB"}
	d.VCPU = &libvirtxml.DomainVCPU{Value: intOr(in, "vcpu", 1)}
	d.Description = rpc.Str(in, "description")
	d.OS.Kernel = rpc.Str(in, "kernel")
	d.OS.Initrd = rpc.Str(in, "initrd")
	d.OS.Type.Arch = rpc.Str(in, "arch")
	d.Type = rpc.Str(in, "type")
	if d.Type == "" {
		d.Type = "kvm"
	}
	// setConsoles
	for i, c := range rpc.List(in, "consoles") {
		console, _ := c.(map[string]any)
		port, err := strconv.ParseUint(rpc.Str(console, "targetPort"), 10, 16)
		if err != nil {
			return nil, nil, fmt.Errorf("consoles[%d]: invalid port when parsing %q: %w", i, rpc.Str(console, "targetPort"), err)
		}
		p := uint(port)
		dc := libvirtxml.DomainConsole{Target: &libvirtxml.DomainConsoleTarget{Port: &p, Type: rpc.Str(console, "targetType")}}
		d.Devices.Consoles = append(d.Devices.Consoles, dc)
	}
	d.OS.Cmdline = cmdline(rpc.List(in, "cmdlines"))
	// setFirmware
	if fw := rpc.Str(in, "firmware"); fw != "" {
		d.OS.Loader = &libvirtxml.DomainLoader{Path: fw, Readonly: "yes", Type: "pflash", Secure: "no"}
		if nvram := rpc.Obj(in, "nvram"); nvram != nil {
			d.OS.NVRam = &libvirtxml.DomainNVRam{NVRam: rpc.Str(nvram, "file"), Template: rpc.Str(nvram, "template")}
		}
	}
	// setDisks (newDefDisk: device disk, virtio vd<letter>, driver qemu)
	for i, dd := range rpc.List(in, "disks") {
		disk, _ := dd.(map[string]any)
		key := rpc.Str(disk, "volumeId")
		if key == "" {
			return nil, nil, fmt.Errorf("disks[%d]: only volume_id disks are reproduced", i)
		}
		pool, name, format, err := r.volume(key)
		if err != nil {
			return nil, nil, fmt.Errorf("can't retrieve volume %s: %w", key, err)
		}
		dk := libvirtxml.DomainDisk{
			Device: "disk",
			Target: &libvirtxml.DomainDiskTarget{Bus: "virtio", Dev: "vd" + diskLetterForIndex(i)},
			Driver: &libvirtxml.DomainDiskDriver{Name: "qemu"},
			Source: &libvirtxml.DomainDiskSource{Volume: &libvirtxml.DomainDiskSourceVolume{Pool: pool, Volume: name}},
		}
		if format == "qcow2" || format == "raw" {
			dk.Driver.Type = format
		}
		d.Devices.Disks = append(d.Devices.Disks, dk)
	}
	// setCloudinit
	if id := rpc.Str(in, "cloudinit"); id != "" {
		disk, err := cloudinitDisk(r, id)
		if err != nil {
			return nil, nil, err
		}
		d.Devices.Disks = append(d.Devices.Disks, disk)
	}
	// setNetworkInterfaces
	var hosts []dhcpHost
	for i, n := range rpc.List(in, "networkInterfaces") {
		nic, _ := n.(map[string]any)
		mac := strings.ToUpper(rpc.Str(nic, "mac"))
		if mac == "" {
			return nil, nil, fmt.Errorf("networkInterfaces[%d]: a random MAC address is not reproduced; give mac", i)
		}
		id := rpc.Str(nic, "networkId")
		if id == "" {
			return nil, nil, fmt.Errorf("networkInterfaces[%d]: only interfaces on a network_id are reproduced", i)
		}
		name, dhcp, err := r.network(id)
		if err != nil {
			return nil, nil, fmt.Errorf("can't retrieve network ID %s: %w", id, err)
		}
		if dhcp {
			hostname := rpc.Str(nic, "hostname")
			if hostname == "" {
				hostname = d.Name
			}
			for _, a := range rpc.List(nic, "addresses") {
				ip := net.ParseIP(fmt.Sprint(a))
				if ip == nil {
					return nil, nil, fmt.Errorf("could not parse addresses '%v'", a)
				}
				hosts = append(hosts, dhcpHost{networkID: id, ip: ip.String(), mac: mac, hostname: hostname})
			}
		}
		d.Devices.Interfaces = append(d.Devices.Interfaces, libvirtxml.DomainInterface{
			MAC:    &libvirtxml.DomainInterfaceMAC{Address: mac},
			Source: &libvirtxml.DomainInterfaceSource{Network: &libvirtxml.DomainInterfaceSourceNetwork{Network: name}},
			Model:  &libvirtxml.DomainInterfaceModel{Type: "virtio"},
		})
	}
	return d, hosts, nil
}

// xmlMarshallIndented is the provider's serialiser.
func xmlMarshallIndented(v any) (string, error) {
	var buf bytes.Buffer
	enc := xml.NewEncoder(&buf)
	enc.Indent("  ", "    ")
	if err := enc.Encode(v); err != nil {
		return "", fmt.Errorf("could not marshall this: %w", err)
	}
	return buf.String(), nil
}

// transformXML follows the provider's transformXML: an empty stylesheet changes nothing; otherwise the
// stylesheet (whitespace-trimmed) and the document go to temporary files and
// `xsltproc --nomkdir --nonet --nowrite STYLESHEET DOCUMENT` writes the result.
func transformXML(doc, xslt string) (string, error) {
	if strings.TrimSpace(xslt) == "" {
		return doc, nil
	}
	sheet, err := os.CreateTemp("", "terraform-provider-libvirt-xslt")
	if err != nil {
		return "", err
	}
	defer os.Remove(sheet.Name())
	if _, err := sheet.WriteString(strings.TrimSpace(xslt)); err != nil {
		return "", err
	}
	sheet.Close()
	input, err := os.CreateTemp("", "terraform-provider-libvirt-xml")
	if err != nil {
		return "", err
	}
	defer os.Remove(input.Name())
	if _, err := input.WriteString(doc); err != nil {
		return "", err
	}
	input.Close()
	cmd := exec.Command("xsltproc", "--nomkdir", "--nonet", "--nowrite", sheet.Name(), input.Name())
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("error applying XSLT stylesheet: %w: %s", err, stderr.String())
	}
	return string(out), nil
}

// domainXML is the document the provider hands to DomainDefineXML.
func domainXML(in map[string]any, r resolver) (string, []dhcpHost, error) {
	d, hosts, err := domainDef(in, r)
	if err != nil {
		return "", nil, err
	}
	doc, err := xmlMarshallIndented(d)
	if err != nil {
		return "", nil, err
	}
	doc, err = transformXML(doc, rpc.Str(rpc.Obj(in, "xml"), "xslt"))
	return doc, hosts, err
}

// --- networks --------------------------------------------------------------------------------------

var networkInputs = []string{"name", "mode", "domain", "bridge", "mtu", "addresses", "autostart", "dns",
	"dhcp", "xml"}

func checkNetwork(in map[string]any) error {
	if err := rpc.Unexpected(in, networkInputs...); err != nil {
		return err
	}
	if err := rpc.Unexpected(rpc.Obj(in, "dns"), "enabled", "localOnly", "hosts"); err != nil {
		return fmt.Errorf("dns: %w (forwarders and SRV records are not reproduced)", err)
	}
	if err := rpc.Unexpected(rpc.Obj(in, "dhcp"), "enabled"); err != nil {
		return fmt.Errorf("dhcp: %w", err)
	}
	if err := rpc.Unexpected(rpc.Obj(in, "xml"), "xslt"); err != nil {
		return fmt.Errorf("xml: %w", err)
	}
	return nil
}

// networkIPConfig follows getNetworkIPConfig: the host takes the first address, DHCP serves from the
// second to the one before the broadcast address.
func networkIPConfig(cidr string) (*libvirtxml.NetworkIP, *libvirtxml.NetworkDHCP, error) {
	_, ipNet, err := net.ParseCIDR(cidr)
	if err != nil {
		return nil, nil, fmt.Errorf("error parsing addresses definition '%s': %w", cidr, err)
	}
	ones, bits := ipNet.Mask.Size()
	family := "ipv4"
	if bits == net.IPv6len*8 {
		family = "ipv6"
	}
	if bits-ones < 3 {
		return nil, nil, fmt.Errorf("netmask seems to be too strict: only %d IPs available (%s)", (1<<(bits-ones))-3, family)
	}
	start := append(net.IP{}, ipNet.IP...)
	end := append(net.IP{}, ipNet.IP...)
	for i := range end {
		end[i] |= ^ipNet.Mask[i]
	}
	start[len(start)-1]++
	ip := &libvirtxml.NetworkIP{Address: start.String(), Prefix: uint(ones), Family: family}
	start[len(start)-1]++
	end[len(end)-1]--
	return ip, &libvirtxml.NetworkDHCP{Ranges: []libvirtxml.NetworkDHCPRange{{Start: start.String(), End: end.String()}}}, nil
}

// dnsHosts follows getDNSHostsFromResource: one <host ip=...> per address with its hostnames. The
// provider groups them through a Go map, so their order is random; here they are in the order of first
// appearance (libvirt does not care).
func dnsHosts(dns map[string]any) ([]libvirtxml.NetworkDNSHost, error) {
	byIP := map[string][]string{}
	var order []string
	for _, h := range rpc.List(dns, "hosts") {
		host, _ := h.(map[string]any)
		ip := rpc.Str(host, "ip")
		if net.ParseIP(ip) == nil {
			return nil, fmt.Errorf("could not parse address '%s'", ip)
		}
		if _, seen := byIP[ip]; !seen {
			order = append(order, ip)
		}
		byIP[ip] = append(byIP[ip], rpc.Str(host, "hostname"))
	}
	var out []libvirtxml.NetworkDNSHost
	for _, ip := range order {
		var names []libvirtxml.NetworkDNSHostHostname
		for _, n := range byIP[ip] {
			names = append(names, libvirtxml.NetworkDNSHostHostname{Hostname: n})
		}
		out = append(out, libvirtxml.NetworkDNSHost{IP: ip, Hostnames: names})
	}
	return out, nil
}

// networkDef follows resourceLibvirtNetworkCreate (resource_libvirt_network.go) and its helpers in
// network.go and network_dns.go:
//   - name; domain (getDomainFromResource: localOnly="yes" only when dns.local_only is true); bridge
//     with stp="on" and the given name (libvirt picks virbrN when empty); mtu when set;
//   - forward: a new <forward mode=...> (the NAT port range of newNetworkDef's template is dropped with
//     it); mode none drops <forward>; nat/none/route/open get their addresses with a DHCP range unless
//     dhcp.enabled is explicitly false, and <dns> with enable="yes"/"no" only when dns.enabled is set
//     (getDNSEnableFromResource: GetOk, so false is not set and writes no attribute) and the hosts;
//   - bridge mode keeps only the bridge name (no stp), no addresses, no DNS;
//   - an empty dnsmasq <options> element (getDNSMasqOptionFromResource, always set).
func networkDef(in map[string]any) (*libvirtxml.Network, error) {
	n := &libvirtxml.Network{Name: rpc.Str(in, "name")}
	dns := rpc.Obj(in, "dns")
	if domain := rpc.Str(in, "domain"); domain != "" {
		n.Domain = &libvirtxml.NetworkDomain{Name: domain}
		if rpc.Bool(dns, "localOnly", false) {
			n.Domain.LocalOnly = "yes"
		}
	}
	n.Bridge = &libvirtxml.NetworkBridge{Name: rpc.Str(in, "bridge"), STP: "on"}
	if mtu, ok := rpc.Num(in, "mtu"); ok && mtu != 0 {
		n.MTU = &libvirtxml.NetworkMTU{Size: uint(mtu)}
	}
	mode := strings.ToLower(rpc.Str(in, "mode"))
	if mode == "" {
		mode = "nat"
	}
	n.Forward = &libvirtxml.NetworkForward{Mode: mode}
	switch mode {
	case "none", "nat", "route", "open":
		if mode == "none" {
			n.Forward = nil
		}
		dhcpEnabled := true
		if dhcp := rpc.Obj(in, "dhcp"); dhcp != nil {
			if enabled, set := dhcp["enabled"].(bool); set {
				dhcpEnabled = enabled
			}
		}
		for _, a := range rpc.List(in, "addresses") {
			ip, dhcp, err := networkIPConfig(fmt.Sprint(a))
			if err != nil {
				return nil, fmt.Errorf("could not set DHCP from adresses '%w'", err)
			}
			if dhcpEnabled {
				ip.DHCP = dhcp
			}
			n.IPs = append(n.IPs, *ip)
		}
		enable := ""
		if rpc.Bool(dns, "enabled", false) {
			enable = "yes"
		}
		hosts, err := dnsHosts(dns)
		if err != nil {
			return nil, err
		}
		n.DNS = &libvirtxml.NetworkDNS{Enable: enable, Host: hosts}
	case "bridge":
		if n.Bridge.Name == "" {
			return nil, fmt.Errorf("'bridge' must be provided when using the bridged network mode")
		}
		n.Bridge.STP = ""
	default:
		return nil, fmt.Errorf("unsupported network mode '%s'", mode)
	}
	n.DnsmasqOptions = &libvirtxml.NetworkDnsmasqOptions{}
	return n, nil
}

func networkXML(in map[string]any) (string, error) {
	n, err := networkDef(in)
	if err != nil {
		return "", err
	}
	doc, err := xmlMarshallIndented(n)
	if err != nil {
		return "", err
	}
	return transformXML(doc, rpc.Str(rpc.Obj(in, "xml"), "xslt"))
}

// hasDHCP follows HasDHCP (network_def.go): nat, route, open, a forward without mode, and isolated
// networks (no forward) are served by libvirt's dnsmasq.
func hasDHCP(n libvirtxml.Network) bool {
	if n.Forward == nil {
		return true
	}
	switch n.Forward.Mode {
	case "nat", "route", "open", "":
		return true
	}
	return false
}
