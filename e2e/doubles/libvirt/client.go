package main

// The connection to libvirtd and the lookups the provider makes while it builds XML.
//
// The provider (libvirt/provider.go, libvirt/uri) connects with go-libvirt to the URI of the provider
// resource when it is configured. The double uses the same library, github.com/digitalocean/go-libvirt,
// served by the Go module proxy at the version the e2e/go.mod pins; its ConnectToURI dials the unix
// socket of qemu:///system or of qemu+unix:///system?socket=PATH (the namespaced libvirtd of the tests),
// then opens qemu:///system on it. Remote transports (qemu+ssh, +tcp, +tls), for which the provider has
// dialers of its own, are not reproduced and fail loudly.

import (
	"encoding/hex"
	"fmt"
	"net/url"
	"strings"
	"sync"

	libvirt "github.com/digitalocean/go-libvirt"
	"libvirt.org/go/libvirtxml"
)

type client struct {
	uri string

	mu   sync.Mutex
	conn *libvirt.Libvirt
	caps *libvirtxml.Caps

	// The provider's Client serialises network defines (networkMutex, "define only one network at a
	// time", libvirt issue 78) and every volume operation in one pool (poolMutexKV).
	networkMu sync.Mutex
	poolMu    sync.Mutex
	pools     map[string]*sync.Mutex
}

func newClient(uri string) (*client, error) {
	if uri == "" {
		uri = "qemu:///system"
	}
	u, err := url.Parse(uri)
	if err != nil {
		return nil, fmt.Errorf("libvirt uri %q: %w", uri, err)
	}
	switch u.Scheme {
	case "qemu", "qemu+unix":
	default:
		return nil, fmt.Errorf("the libvirt double reaches only a local libvirtd over its unix socket "+
			"(qemu:///system or qemu+unix:///system?socket=...), not %q", uri)
	}
	if u.Host != "" || u.Path != "/system" {
		return nil, fmt.Errorf("the libvirt double reaches only qemu:///system on this machine, not %q", uri)
	}
	return &client{uri: uri, pools: map[string]*sync.Mutex{}}, nil
}

// lv connects on first use (a preview of new resources never needs libvirtd).
func (c *client) lv() (*libvirt.Libvirt, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn != nil {
		select {
		case <-c.conn.Disconnected():
			c.conn = nil
		default:
			return c.conn, nil
		}
	}
	u, err := url.Parse(c.uri)
	if err != nil {
		return nil, err
	}
	conn, err := libvirt.ConnectToURI(u)
	if err != nil {
		return nil, fmt.Errorf("failed to connect to %s: %w", c.uri, err)
	}
	c.conn = conn
	return conn, nil
}

func (c *client) poolLock(name string) func() {
	c.poolMu.Lock()
	m, ok := c.pools[name]
	if !ok {
		m = &sync.Mutex{}
		c.pools[name] = m
	}
	c.poolMu.Unlock()
	m.Lock()
	return m.Unlock
}

func (c *client) capabilities() (*libvirtxml.Caps, error) {
	l, err := c.lv()
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.caps != nil {
		return c.caps, nil
	}
	text, err := l.ConnectGetCapabilities()
	if err != nil {
		return nil, err
	}
	caps := &libvirtxml.Caps{}
	if err := caps.Unmarshal(text); err != nil {
		return nil, err
	}
	c.caps = caps
	return caps, nil
}

// isError follows the provider's isError: the libvirt error code of err (or of what it wraps).
func isError(err error, code libvirt.ErrorNumber) bool {
	for err != nil {
		if e, ok := err.(libvirt.Error); ok {
			return e.Code == uint32(code)
		}
		u, ok := err.(interface{ Unwrap() error })
		if !ok {
			return false
		}
		err = u.Unwrap()
	}
	return false
}

// parseUUID and uuidString: the ids of domains, networks and pools are their UUIDs.
func parseUUID(s string) (libvirt.UUID, error) {
	var u libvirt.UUID
	b, err := hex.DecodeString(strings.ReplaceAll(s, "-", ""))
	if err != nil || len(b) != len(u) {
		return u, fmt.Errorf("%q is not a UUID", s)
	}
	copy(u[:], b)
	return u, nil
}

func uuidString(u libvirt.UUID) string {
	h := hex.EncodeToString(u[:])
	return fmt.Sprintf("%s-%s-%s-%s-%s", h[0:8], h[8:12], h[12:16], h[16:20], h[20:32])
}

// --- resolver on a live libvirtd --------------------------------------------------------------------

func (c *client) volume(key string) (string, string, string, error) {
	l, err := c.lv()
	if err != nil {
		return "", "", "", err
	}
	vol, err := l.StorageVolLookupByKey(key)
	if err != nil {
		return "", "", "", err
	}
	pool, err := l.StoragePoolLookupByVolume(vol)
	if err != nil {
		return "", "", "", fmt.Errorf("can't retrieve pool for volume %s", key)
	}
	text, err := l.StorageVolGetXMLDesc(vol, 0)
	if err != nil {
		return "", "", "", err
	}
	def := libvirtxml.StorageVolume{}
	if err := def.Unmarshal(text); err != nil {
		return "", "", "", err
	}
	format := ""
	if def.Target != nil && def.Target.Format != nil {
		format = def.Target.Format.Type
	}
	return pool.Name, vol.Name, format, nil
}

func (c *client) volumePath(key string) (string, error) {
	l, err := c.lv()
	if err != nil {
		return "", err
	}
	vol, err := l.StorageVolLookupByKey(key)
	if err != nil {
		return "", err
	}
	return l.StorageVolGetPath(vol)
}

func (c *client) networkDefByUUID(id string) (libvirt.Network, libvirtxml.Network, error) {
	l, err := c.lv()
	if err != nil {
		return libvirt.Network{}, libvirtxml.Network{}, err
	}
	u, err := parseUUID(id)
	if err != nil {
		return libvirt.Network{}, libvirtxml.Network{}, err
	}
	n, err := l.NetworkLookupByUUID(u)
	if err != nil {
		return libvirt.Network{}, libvirtxml.Network{}, err
	}
	text, err := l.NetworkGetXMLDesc(n, 0)
	if err != nil {
		return n, libvirtxml.Network{}, err
	}
	def := libvirtxml.Network{}
	if err := def.Unmarshal(text); err != nil {
		return n, libvirtxml.Network{}, err
	}
	return n, def, nil
}

func (c *client) network(id string) (string, bool, error) {
	n, def, err := c.networkDefByUUID(id)
	if err != nil {
		return "", false, err
	}
	return n.Name, hasDHCP(def), nil
}

func (c *client) canonicalMachine(arch, machine string) (string, error) {
	caps, err := c.capabilities()
	if err != nil {
		return "", err
	}
	return canonicalMachine(caps, arch, machine)
}

func (c *client) hostArch() (string, error) {
	caps, err := c.capabilities()
	if err != nil {
		return "", err
	}
	if caps.Host.CPU == nil || caps.Host.CPU.Arch == "" {
		return "", fmt.Errorf("the host capabilities name no architecture")
	}
	return caps.Host.CPU.Arch, nil
}

// canonicalMachine follows getCanonicalMachineName: the machine of the hvm guest of that arch whose
// name is `machine`, as its canonical name when it has one.
func canonicalMachine(caps *libvirtxml.Caps, arch, machine string) (string, error) {
	for _, guest := range caps.Guests {
		if guest.OSType != "hvm" || guest.Arch.Name != arch {
			continue
		}
		machines := guest.Arch.Machines
		for _, d := range guest.Arch.Domains {
			machines = append(machines, d.Machines...)
		}
		for _, m := range machines {
			if m.Name == machine {
				if m.Canonical != "" {
					return m.Canonical, nil
				}
				return m.Name, nil
			}
		}
	}
	return "", fmt.Errorf("cannot find machine type %s for hvm/%s in the host capabilities", machine, arch)
}
