// pulumi-resource-libvirt (double): Provider, Pool, Volume, CloudInitDisk, Network and Domain of
// pulumi-libvirt 0.5.4, which bridges dmacvicar/terraform-provider-libvirt 0.8.1. It creates real
// objects on the libvirtd the provider's `uri` names (client.go). The real plugin cannot be built here
// (the Go module proxy refuses it, docs/testing.md); users get it from Pulumi.
//
// Each operation below follows the provider's resource file (paths in
// dmacvicar/terraform-provider-libvirt, libvirt/): the same libvirt calls, in the same order, with the
// XML of xmldef.go. Diff follows components/provider_facts.json (internal/rpc). Update applies what the
// provider applies (the facts' applied_in_place) and, like the provider, accepts the other in-place
// changes without applying them, with a warning on the resource saying so.
//
// `pulumi-resource-libvirt domain-xml` and `network-xml` print the XML for given inputs without a
// libvirtd (offline.go): that is how tests/integration/test_domain_define.py gets it.
package main

import (
	"context"
	"encoding/xml"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"time"

	libvirt "github.com/digitalocean/go-libvirt"
	"github.com/google/uuid"
	"libvirt.org/go/libvirtxml"

	"github.com/pulumi/pulumi/sdk/v3/go/common/diag"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"

	"hyperscaler/e2e/doubles/internal/facts"
	"hyperscaler/e2e/doubles/internal/rpc"
)

const (
	poolType      = "libvirt:index/pool:Pool"
	volumeType    = "libvirt:index/volume:Volume"
	cloudinitType = "libvirt:index/cloudInitDisk:CloudInitDisk"
	networkType   = "libvirt:index/network:Network"
	domainType    = "libvirt:index/domain:Domain"
)

type double struct {
	c *client
}

func (d *double) Types() []string {
	return []string{poolType, volumeType, cloudinitType, networkType, domainType}
}

// Configure: the provider's only setting the program uses is `uri`.
func (d *double) Configure(_ context.Context, config map[string]any) error {
	if err := rpc.Unexpected(config, "uri", "version"); err != nil {
		return fmt.Errorf("provider configuration: %w", err)
	}
	c, err := newClient(rpc.Str(config, "uri"))
	if err != nil {
		return err
	}
	d.c = c
	return nil
}

func (d *double) client() (*client, error) {
	if d.c == nil {
		c, err := newClient("")
		if err != nil {
			return nil, err
		}
		d.c = c
	}
	return d.c, nil
}

func (d *double) Check(token string, in map[string]any) error {
	switch token {
	case poolType:
		if err := rpc.Unexpected(in, "name", "type", "target", "path", "xml"); err != nil {
			return err
		}
		if t := rpc.Str(in, "type"); t != "dir" {
			return fmt.Errorf("only pools of type dir are reproduced, not %q", t)
		}
	case volumeType:
		if err := rpc.Unexpected(in, "name", "pool", "source", "size", "format", "baseVolumeId", "xml"); err != nil {
			return fmt.Errorf("%w (base_volume_name/base_volume_pool are not reproduced)", err)
		}
		if src := rpc.Str(in, "source"); src != "" && !filepath.IsAbs(src) {
			return fmt.Errorf("source %q: only a local absolute path is reproduced (no http(s) download)", src)
		}
	case cloudinitType:
		return rpc.Unexpected(in, "name", "pool", "userData", "metaData", "networkConfig")
	case networkType:
		return checkNetwork(in)
	case domainType:
		return checkDomain(in)
	}
	return nil
}

func (d *double) Create(ctx context.Context, call *rpc.Call) (string, resource.PropertyMap, error) {
	if call.Preview {
		return "", call.Inputs.Copy(), nil
	}
	c, err := d.client()
	if err != nil {
		return "", nil, err
	}
	switch call.Type {
	case poolType:
		return c.createPool(ctx, call)
	case volumeType:
		return c.createVolume(ctx, call)
	case cloudinitType:
		return c.createCloudinit(ctx, call)
	case networkType:
		return c.createNetwork(ctx, call)
	case domainType:
		return c.createDomain(ctx, call)
	}
	return "", nil, fmt.Errorf("no create for %s", call.Type)
}

// notApplied warns, on the resource, about the changed inputs the provider accepts but never applies.
func notApplied(ctx context.Context, call *rpc.Call, changed []string) error {
	f, err := facts.For(call.Type)
	if err != nil {
		return err
	}
	var ignored []string
	for _, k := range changed {
		if !f.Applies(k) {
			ignored = append(ignored, k)
		}
	}
	if len(ignored) > 0 {
		call.Log(ctx, diag.Warning, fmt.Sprintf("changed %s: accepted and not applied to the running object, as "+
			"terraform-provider-libvirt 0.8.1 does (components/provider_facts.json)", strings.Join(ignored, ", ")))
	}
	return nil
}

func (d *double) Update(ctx context.Context, call *rpc.Call, changed []string) (resource.PropertyMap, error) {
	if call.Preview {
		return call.Inputs.Copy(), nil
	}
	c, err := d.client()
	if err != nil {
		return nil, err
	}
	if err := notApplied(ctx, call, changed); err != nil {
		return nil, err
	}
	switch call.Type {
	case networkType:
		return c.updateNetwork(ctx, call, changed)
	case domainType:
		return c.updateDomain(ctx, call, changed)
	}
	// Pool, Volume and CloudInitDisk have no Update in the provider: every input replaces them.
	return nil, fmt.Errorf("%s has no in-place update in terraform-provider-libvirt; changed %v should have "+
		"replaced it (components/provider_facts.json)", call.Type, changed)
}

func (d *double) Delete(ctx context.Context, call *rpc.Call) error {
	c, err := d.client()
	if err != nil {
		return err
	}
	switch call.Type {
	case poolType:
		return c.deletePool(ctx, call)
	case volumeType:
		return c.volumeDelete(call.ID)
	case cloudinitType:
		key, _, ok := strings.Cut(call.ID, ";")
		if !ok {
			return fmt.Errorf("%s is not a valid key", call.ID)
		}
		return c.volumeDelete(key)
	case networkType:
		return c.deleteNetwork(call)
	case domainType:
		return c.deleteDomain(call)
	}
	return fmt.Errorf("no delete for %s", call.Type)
}

func withOutputs(in resource.PropertyMap, outs map[string]any) resource.PropertyMap {
	values := map[string]resource.PropertyValue{}
	for k, v := range outs {
		values[k] = resource.NewPropertyValue(v)
	}
	return rpc.WithOutputs(in, values)
}

// --- Pool (resource_libvirt_pool.go) -----------------------------------------------------------------

func (c *client) createPool(_ context.Context, call *rpc.Call) (string, resource.PropertyMap, error) {
	l, err := c.lv()
	if err != nil {
		return "", nil, err
	}
	name := rpc.Str(call.Plain, "name")
	defer c.poolLock(name)()
	// "Check whether the storage pool already exists. Its name needs to be unique."
	if _, err := l.StoragePoolLookupByName(name); err == nil {
		return "", nil, fmt.Errorf("storage pool '%s' already exists", name)
	}
	path := rpc.Str(call.Plain, "path")
	if path == "" {
		path = rpc.Str(rpc.Obj(call.Plain, "target"), "path")
	}
	def := libvirtxml.StoragePool{Type: "dir", Name: name, Target: &libvirtxml.StoragePoolTarget{Path: path}}
	data, err := xmlMarshallIndented(def)
	if err != nil {
		return "", nil, err
	}
	if data, err = transformXML(data, rpc.Str(rpc.Obj(call.Plain, "xml"), "xslt")); err != nil {
		return "", nil, err
	}
	pool, err := l.StoragePoolDefineXML(data, 0)
	if err != nil {
		return "", nil, fmt.Errorf("error creating libvirt storage pool: %w", err)
	}
	if err := l.StoragePoolBuild(pool, 0); err != nil {
		return "", nil, fmt.Errorf("error building libvirt storage pool: %w", err)
	}
	if err := l.StoragePoolSetAutostart(pool, 1); err != nil {
		return "", nil, fmt.Errorf("error setting up libvirt storage pool: %w", err)
	}
	if err := l.StoragePoolCreate(pool, libvirt.StoragePoolCreateFlags(libvirt.StoragePoolBuildNew)); err != nil {
		return "", nil, fmt.Errorf("error starting libvirt storage pool: %w", err)
	}
	if err := l.StoragePoolRefresh(pool, 0); err != nil {
		return "", nil, fmt.Errorf("error refreshing libvirt storage pool: %w", err)
	}
	_, capacity, allocation, available, err := l.StoragePoolGetInfo(pool)
	if err != nil {
		return "", nil, fmt.Errorf("error retrieving pool info: %w", err)
	}
	return uuidString(pool.UUID), withOutputs(call.Inputs, map[string]any{
		"capacity": float64(capacity), "allocation": float64(allocation), "available": float64(available),
	}), nil
}

func (c *client) deletePool(_ context.Context, call *rpc.Call) error {
	l, err := c.lv()
	if err != nil {
		return err
	}
	u, err := parseUUID(call.ID)
	if err != nil {
		return err
	}
	pool, err := l.StoragePoolLookupByUUID(u)
	if err != nil {
		if isError(err, libvirt.ErrNoStoragePool) {
			return nil
		}
		return fmt.Errorf("error retrieving storage pool info: %w", err)
	}
	defer c.poolLock(pool.Name)()
	state, _, _, _, err := l.StoragePoolGetInfo(pool)
	if err != nil {
		return fmt.Errorf("error retrieving storage pool info: %w", err)
	}
	if state != uint8(libvirt.StoragePoolInactive) {
		if err := l.StoragePoolDestroy(pool); err != nil {
			return fmt.Errorf("error deleting storage pool: %w", err)
		}
	}
	if err := l.StoragePoolDelete(pool, 0); err != nil {
		return fmt.Errorf("error deleting storage pool: %w", err)
	}
	if err := l.StoragePoolUndefine(pool); err != nil {
		return fmt.Errorf("error deleting storage pool: %w", err)
	}
	return nil
}

// --- Volume (resource_libvirt_volume.go, volume_def.go) ------------------------------------------

// newDefVolume: qcow2, permissions 644, capacity 1 byte until set.
func newDefVolume(name string) libvirtxml.StorageVolume {
	return libvirtxml.StorageVolume{
		Name: name,
		Target: &libvirtxml.StorageVolumeTarget{
			Format:      &libvirtxml.StorageVolumeTargetFormat{Type: "qcow2"},
			Permissions: &libvirtxml.StorageVolumeTargetPermissions{Mode: "644"},
		},
		Capacity: &libvirtxml.StorageVolumeSize{Unit: "bytes", Value: 1},
	}
}

// isQCOW2 reads the image's magic number, as the provider's image.IsQCOW2 does.
func isQCOW2(path string) (bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	magic := make([]byte, 4)
	if _, err := io.ReadFull(f, magic); err != nil {
		return false, nil
	}
	return string(magic) == "QFI\xfb", nil
}

// refreshPool: "Refresh the pool of the volume so that libvirt knows it is not longer in use", retried
// as the provider retries it (resource.RetryContext until the create timeout).
func refreshPool(l *libvirt.Libvirt, pool libvirt.StoragePool) error {
	var err error
	for deadline := time.Now().Add(5 * time.Minute); time.Now().Before(deadline); time.Sleep(time.Second) {
		if err = l.StoragePoolRefresh(pool, 0); err == nil {
			return nil
		}
	}
	return err
}

func upload(l *libvirt.Libvirt, vol libvirt.StorageVol, path string, size uint64) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return l.StorageVolUpload(vol, f, 0, size, 0)
}

func (c *client) createVolume(_ context.Context, call *rpc.Call) (string, resource.PropertyMap, error) {
	l, err := c.lv()
	if err != nil {
		return "", nil, err
	}
	in := call.Plain
	poolName := rpc.Str(in, "pool")
	if poolName == "" {
		poolName = "default"
	}
	defer c.poolLock(poolName)()
	pool, err := l.StoragePoolLookupByName(poolName)
	if err != nil {
		return "", nil, fmt.Errorf("can't find storage pool '%s'", poolName)
	}
	if err := refreshPool(l, pool); err != nil {
		return "", nil, err
	}
	def := newDefVolume(rpc.Str(in, "name"))
	givenFormat := rpc.Str(in, "format")
	if givenFormat != "" {
		def.Target.Format.Type = givenFormat
	}
	_, sizeGiven := rpc.Num(in, "size")
	source := rpc.Str(in, "source")
	if source != "" {
		if sizeGiven {
			return "", nil, fmt.Errorf("'size' can't be specified when also 'source' is given (the size will be set to the size of the source image")
		}
		if rpc.Str(in, "baseVolumeId") != "" {
			return "", nil, fmt.Errorf("'base_volume_id' can't be specified when also 'source' is given")
		}
		qcow2, err := isQCOW2(source)
		if err != nil {
			return "", nil, fmt.Errorf("error while determining image type for %s: %w", source, err)
		}
		if qcow2 {
			def.Target.Format.Type = "qcow2"
		}
		if givenFormat != "" && qcow2 && givenFormat != "qcow2" {
			return "", nil, fmt.Errorf("format other than QCOW2 explicitly specified for image detected as QCOW2 image: %s", source)
		}
		st, err := os.Stat(source)
		if err != nil {
			return "", nil, err
		}
		def.Capacity.Unit = "B"
		def.Capacity.Value = uint64(st.Size())
	} else {
		if sizeGiven {
			n, _ := rpc.Num(in, "size")
			def.Capacity.Value = uint64(n)
		}
		if baseKey := rpc.Str(in, "baseVolumeId"); baseKey != "" {
			base, err := l.StorageVolLookupByKey(baseKey)
			if err != nil {
				return "", nil, fmt.Errorf("can't retrieve volume ID '%s': %w", baseKey, err)
			}
			text, err := l.StorageVolGetXMLDesc(base, 0)
			if err != nil {
				return "", nil, err
			}
			baseDef := libvirtxml.StorageVolume{}
			if err := baseDef.Unmarshal(text); err != nil {
				return "", nil, err
			}
			basePath, err := l.StorageVolGetPath(base)
			if err != nil {
				return "", nil, fmt.Errorf("could not get base image path: %w", err)
			}
			// newDefBackingStoreFromLibvirt: the base volume's path and format.
			backing := libvirtxml.StorageVolumeBackingStore{Path: basePath}
			if baseDef.Target != nil && baseDef.Target.Format != nil {
				backing.Format = &libvirtxml.StorageVolumeTargetFormat{Type: baseDef.Target.Format.Type}
			}
			if !sizeGiven && baseDef.Capacity != nil {
				def.Capacity.Value = baseDef.Capacity.Value
			}
			if baseDef.Capacity != nil && def.Capacity.Value < baseDef.Capacity.Value {
				return "", nil, fmt.Errorf("when 'size' is specified, it shouldn't be smaller than the backing store " +
					"specified with 'base_volume_id' or 'base_volume_name/base_volume_pool'")
			}
			def.BackingStore = &backing
		}
	}
	data, err := xmlMarshallIndented(def)
	if err != nil {
		return "", nil, err
	}
	if data, err = transformXML(data, rpc.Str(rpc.Obj(in, "xml"), "xslt")); err != nil {
		return "", nil, err
	}
	vol, err := l.StorageVolCreateXML(pool, data, 0)
	if err != nil {
		if !isError(err, libvirt.ErrStorageVolExist) {
			return "", nil, fmt.Errorf("error creating libvirt volume: %w", err)
		}
		// "oops, volume exists already, read it and move on": the provider adopts it as it is.
		if vol, err = l.StorageVolLookupByName(pool, def.Name); err != nil {
			return "", nil, fmt.Errorf("error looking up libvirt volume: %w", err)
		}
		call.Log(context.Background(), diag.Warning, fmt.Sprintf("Volume about to be created was found and left as-is: %s", def.Name))
	}
	if source != "" {
		if err := upload(l, vol, source, def.Capacity.Value); err != nil {
			return "", nil, fmt.Errorf("error while uploading source %s: %w", source, err)
		}
	}
	_, capacity, _, err := l.StorageVolGetInfo(vol)
	if err != nil {
		return "", nil, fmt.Errorf("error retrieving volume info: %w", err)
	}
	return vol.Key, withOutputs(call.Inputs, map[string]any{
		"size": float64(capacity), "format": def.Target.Format.Type, "pool": poolName,
	}), nil
}

// volumeDelete follows the provider's volumeDelete: look the volume up by key, refresh its pool, read
// its XML (the provider's workaround for redhat#1293804), delete it.
func (c *client) volumeDelete(key string) error {
	l, err := c.lv()
	if err != nil {
		return err
	}
	vol, err := l.StorageVolLookupByKey(key)
	if err != nil {
		return fmt.Errorf("can't retrieve volume %s: %w", key, err)
	}
	pool, err := l.StoragePoolLookupByVolume(vol)
	if err != nil {
		return fmt.Errorf("error retrieving pool for volume: %w", err)
	}
	defer c.poolLock(pool.Name)()
	if err := refreshPool(l, pool); err != nil {
		return err
	}
	if _, err := l.StorageVolGetXMLDesc(vol, 0); err != nil {
		return fmt.Errorf("can't retrieve volume %s XML desc: %w", key, err)
	}
	if err := l.StorageVolDelete(vol, 0); err != nil {
		return fmt.Errorf("can't delete volume %s: %w", key, err)
	}
	return nil
}

// --- CloudInitDisk (resource_cloud_init.go, cloudinit_def.go) ------------------------------------

func (c *client) createCloudinit(_ context.Context, call *rpc.Call) (string, resource.PropertyMap, error) {
	in := call.Plain
	name := rpc.Str(in, "name")
	// createFiles + createISO: the three files (empty when unset) in a temporary directory, then
	// `mkisofs -output <dir>/<name> -volid cidata -joliet -rock user-data meta-data network-config`.
	dir, err := os.MkdirTemp("", "cloudinit")
	if err != nil {
		return "", nil, fmt.Errorf("cannot create tmp directory for cloudinit ISO generation: %w", err)
	}
	defer os.RemoveAll(dir)
	files := []string{}
	for _, f := range []struct{ file, key string }{
		{"user-data", "userData"}, {"meta-data", "metaData"}, {"network-config", "networkConfig"},
	} {
		path := filepath.Join(dir, f.file)
		if err := os.WriteFile(path, []byte(rpc.Str(in, f.key)), os.ModePerm); err != nil {
			return "", nil, fmt.Errorf("error while writing %s to file: %w", f.file, err)
		}
		files = append(files, path)
	}
	iso := filepath.Join(dir, name)
	args := append([]string{"-output", iso, "-volid", "cidata", "-joliet", "-rock"}, files...)
	if out, err := exec.Command("mkisofs", args...).CombinedOutput(); err != nil {
		return "", nil, fmt.Errorf("error while starting the creation of CloudInit's ISO image: %w: %s", err, out)
	}
	// UploadIso
	l, err := c.lv()
	if err != nil {
		return "", nil, err
	}
	poolName := rpc.Str(in, "pool")
	if poolName == "" {
		poolName = "default"
	}
	pool, err := l.StoragePoolLookupByName(poolName)
	if err != nil {
		return "", nil, fmt.Errorf("can't find storage pool '%s'", poolName)
	}
	defer c.poolLock(poolName)()
	if err := refreshPool(l, pool); err != nil {
		return "", nil, err
	}
	st, err := os.Stat(iso)
	if err != nil {
		return "", nil, err
	}
	def := newDefVolume(name)
	def.Capacity.Unit = "B"
	def.Capacity.Value = uint64(st.Size())
	def.Target.Format.Type = "raw"
	data, err := xml.Marshal(def)
	if err != nil {
		return "", nil, fmt.Errorf("error serializing libvirt volume: %w", err)
	}
	vol, err := l.StorageVolCreateXML(pool, string(data), 0)
	if err != nil {
		return "", nil, fmt.Errorf("error creating libvirt volume for cloudinit device %s: %w", name, err)
	}
	if err := upload(l, vol, iso, uint64(st.Size())); err != nil {
		return "", nil, fmt.Errorf("error while uploading cloudinit %s: %w", iso, err)
	}
	// buildTerraformKey: the volume key and a new UUID, joined by ";".
	return fmt.Sprintf("%s;%s", vol.Key, uuid.New()), withOutputs(call.Inputs, map[string]any{"pool": poolName}), nil
}

// --- Network (resource_libvirt_network.go, network_dns.go) ---------------------------------------

func (c *client) createNetwork(_ context.Context, call *rpc.Call) (string, resource.PropertyMap, error) {
	l, err := c.lv()
	if err != nil {
		return "", nil, err
	}
	data, err := networkXML(call.Plain)
	if err != nil {
		return "", nil, err
	}
	network, err := func() (libvirt.Network, error) {
		c.networkMu.Lock()
		defer c.networkMu.Unlock()
		return l.NetworkDefineXML(data)
	}()
	if err != nil {
		return "", nil, fmt.Errorf("error defining libvirt network: %w - %s", err, data)
	}
	if err := l.NetworkCreate(network); err != nil {
		_ = l.NetworkDestroy(network)
		_ = l.NetworkUndefine(network)
		return "", nil, fmt.Errorf("error creating libvirt network: %w", err)
	}
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(time.Second) {
		active, err := l.NetworkIsActive(network)
		if err != nil {
			return "", nil, err
		}
		if active == 1 {
			break
		}
		if time.Now().After(deadline) {
			return "", nil, fmt.Errorf("error waiting for network to reach ACTIVE state")
		}
	}
	if rpc.Bool(call.Plain, "autostart", false) {
		if err := l.NetworkSetAutostart(network, 1); err != nil {
			return "", nil, fmt.Errorf("error setting autostart for network: %w", err)
		}
	}
	return uuidString(network.UUID), call.Inputs.Copy(), nil
}

// dnsHostEntries groups dns.hosts by address with sorted hostnames (parseNetworkDNSHostsChange).
func dnsHostEntries(dns map[string]any) map[string][]string {
	out := map[string][]string{}
	for _, h := range rpc.List(dns, "hosts") {
		host, _ := h.(map[string]any)
		out[rpc.Str(host, "ip")] = append(out[rpc.Str(host, "ip")], rpc.Str(host, "hostname"))
	}
	for ip := range out {
		sortStrings(out[ip])
	}
	return out
}

func (c *client) updateNetwork(_ context.Context, call *rpc.Call, changed []string) (resource.PropertyMap, error) {
	l, err := c.lv()
	if err != nil {
		return nil, err
	}
	u, err := parseUUID(call.ID)
	if err != nil {
		return nil, err
	}
	network, err := l.NetworkLookupByUUID(u)
	if err != nil {
		return nil, fmt.Errorf("can't retrieve network with ID '%s' during update: %w", call.ID, err)
	}
	active, err := l.NetworkIsActive(network)
	if err != nil {
		return nil, fmt.Errorf("error when getting network %s status during update: %w", network.Name, err)
	}
	if active != 1 {
		if err := l.NetworkCreate(network); err != nil {
			return nil, fmt.Errorf("error when activating network %s during update: %w", network.Name, err)
		}
	}
	has := func(k string) bool {
		for _, c := range changed {
			if c == k {
				return true
			}
		}
		return false
	}
	if has("autostart") {
		if err := l.NetworkSetAutostart(network, bool2int(rpc.Bool(call.Plain, "autostart", false))); err != nil {
			return nil, fmt.Errorf("error updating autostart for network %s: %w", network.Name, err)
		}
	}
	// updateDNSHosts: delete the entries that went away (by address), add the new ones.
	olds, news := dnsHostEntries(rpc.Obj(call.OldPlain, "dns")), dnsHostEntries(rpc.Obj(call.Plain, "dns"))
	flags := libvirt.NetworkUpdateAffectLive | libvirt.NetworkUpdateAffectConfig
	for ip, names := range olds {
		if reflect.DeepEqual(news[ip], names) {
			continue
		}
		data, err := xmlMarshallIndented(libvirtxml.NetworkDNSHost{IP: ip})
		if err != nil {
			return nil, err
		}
		if err := l.NetworkUpdateCompat(network, libvirt.NetworkUpdateCommandDelete, libvirt.NetworkSectionDNSHost, -1, data, flags); err != nil {
			return nil, fmt.Errorf("delete %s: %w", ip, err)
		}
	}
	for ip, names := range news {
		if reflect.DeepEqual(olds[ip], names) {
			continue
		}
		host := libvirtxml.NetworkDNSHost{IP: ip}
		for _, n := range names {
			host.Hostnames = append(host.Hostnames, libvirtxml.NetworkDNSHostHostname{Hostname: n})
		}
		data, err := xmlMarshallIndented(host)
		if err != nil {
			return nil, err
		}
		if err := l.NetworkUpdateCompat(network, libvirt.NetworkUpdateCommandAddLast, libvirt.NetworkSectionDNSHost, -1, data, flags); err != nil {
			return nil, fmt.Errorf("add %v: %w", host, err)
		}
	}
	return call.Inputs.Copy(), nil
}

func (c *client) deleteNetwork(call *rpc.Call) error {
	l, err := c.lv()
	if err != nil {
		return err
	}
	u, err := parseUUID(call.ID)
	if err != nil {
		return err
	}
	network, err := l.NetworkLookupByUUID(u)
	if err != nil {
		return fmt.Errorf("when destroying libvirt network: error retrieving %w", err)
	}
	active, err := l.NetworkIsActive(network)
	if err != nil {
		return fmt.Errorf("couldn't determine if network is active: %w", err)
	}
	if active == 1 {
		if err := l.NetworkDestroy(network); err != nil {
			return fmt.Errorf("when destroying libvirt network: %w", err)
		}
	}
	if err := l.NetworkUndefine(network); err != nil {
		return fmt.Errorf("couldn't undefine libvirt network: %w", err)
	}
	return nil
}

func sortStrings(s []string) { sort.Strings(s) }

func parseIP(s string) net.IP { return net.ParseIP(s) }

func parseCIDR(address string, prefix uint) (net.IP, *net.IPNet, error) {
	return net.ParseCIDR(fmt.Sprintf("%s/%d", address, prefix))
}

func bool2int(b bool) int32 {
	if b {
		return 1
	}
	return 0
}

// --- Domain (resource_libvirt_domain.go, domain.go, network_def.go) ------------------------------

// updateOrAddHost: modify the DHCP host entry of that address (in the <ip> that holds it), or add it
// when libvirt answers that there is none (VIR_ERR_OPERATION_INVALID).
func (c *client) updateOrAddHost(h dhcpHost) error {
	l, err := c.lv()
	if err != nil {
		return err
	}
	network, def, err := c.networkDefByUUID(h.networkID)
	if err != nil {
		return fmt.Errorf("can't retrieve network ID %s: %w", h.networkID, err)
	}
	idx := int32(-1)
	for i, ip := range def.IPs {
		_, cidr, err := parseCIDR(ip.Address, ip.Prefix)
		if err == nil && cidr.Contains(parseIP(h.ip)) {
			idx = int32(i)
			break
		}
	}
	host := struct {
		XMLName xml.Name `xml:"host"`
		libvirtxml.NetworkDHCPHost
	}{NetworkDHCPHost: libvirtxml.NetworkDHCPHost{IP: h.ip, MAC: h.mac, Name: h.hostname}}
	data, err := xmlMarshallIndented(host)
	if err != nil {
		return err
	}
	flags := libvirt.NetworkUpdateAffectConfig | libvirt.NetworkUpdateAffectLive
	err = l.NetworkUpdateCompat(network, libvirt.NetworkUpdateCommandModify, libvirt.NetworkSectionIPDhcpHost, idx, data, flags)
	if isError(err, libvirt.ErrOperationInvalid) {
		return l.NetworkUpdateCompat(network, libvirt.NetworkUpdateCommandAddLast, libvirt.NetworkSectionIPDhcpHost, idx, data, flags)
	}
	return err
}

func (c *client) createDomain(ctx context.Context, call *rpc.Call) (string, resource.PropertyMap, error) {
	l, err := c.lv()
	if err != nil {
		return "", nil, err
	}
	data, hosts, err := domainXML(call.Plain, c)
	if err != nil {
		return "", nil, err
	}
	for _, h := range hosts {
		if err := c.updateOrAddHost(h); err != nil {
			return "", nil, err
		}
	}
	dom, err := l.DomainDefineXML(data)
	if err != nil {
		return "", nil, fmt.Errorf("error defining libvirt domain: %w", err)
	}
	if rpc.Bool(call.Plain, "autostart", false) {
		if err := l.DomainSetAutostart(dom, 1); err != nil {
			return "", nil, fmt.Errorf("error setting autostart for domain: %w", err)
		}
	}
	if err := l.DomainCreate(dom); err != nil {
		return "", nil, fmt.Errorf("error creating libvirt domain: %w", err)
	}
	// destroyDomainByUserRequest: a domain declared not running is started, then destroyed.
	if !rpc.Bool(call.Plain, "running", true) {
		if err := l.DomainDestroy(dom); err != nil {
			return "", nil, fmt.Errorf("couldn't destroy libvirt domain: %w", err)
		}
	}
	call.Log(ctx, diag.Debug, fmt.Sprintf("defined and started domain %s", dom.Name))
	return uuidString(dom.UUID), call.Inputs.Copy(), nil
}

func (c *client) updateDomain(_ context.Context, call *rpc.Call, changed []string) (resource.PropertyMap, error) {
	l, err := c.lv()
	if err != nil {
		return nil, err
	}
	u, err := parseUUID(call.ID)
	if err != nil {
		return nil, err
	}
	dom, err := l.DomainLookupByUUID(u)
	if err != nil {
		return nil, fmt.Errorf("error retrieving libvirt domain by update: %w", err)
	}
	state, _, err := l.DomainGetState(dom, 0)
	if err != nil {
		return nil, fmt.Errorf("couldn't get state of domain: %w", err)
	}
	// The provider starts a stopped domain on every update, whatever `running` says.
	if libvirt.DomainState(state) != libvirt.DomainRunning {
		if err := l.DomainCreate(dom); err != nil {
			return nil, fmt.Errorf("error creating libvirt domain: %w", err)
		}
	}
	changes := map[string]bool{}
	for _, k := range changed {
		changes[k] = true
	}
	if changes["cloudinit"] {
		disk, err := cloudinitDisk(c, rpc.Str(call.Plain, "cloudinit"))
		if err != nil {
			return nil, err
		}
		data, err := xml.Marshal(disk)
		if err != nil {
			return nil, fmt.Errorf("error serializing cloudinit disk: %w", err)
		}
		flags := libvirt.DomainDeviceModifyConfig | libvirt.DomainDeviceModifyCurrent | libvirt.DomainDeviceModifyLive
		if err := l.DomainUpdateDeviceFlags(dom, string(data), flags); err != nil {
			return nil, fmt.Errorf("error while changing the cloudinit volume: %w", err)
		}
	}
	if changes["autostart"] {
		if err := l.DomainSetAutostart(dom, bool2int(rpc.Bool(call.Plain, "autostart", false))); err != nil {
			return nil, fmt.Errorf("error setting autostart for domain: %w", err)
		}
	}
	// Network interfaces: only a changed hostname, addresses or mac is applied, and only to the DHCP
	// host entries of the interface's network.
	olds := rpc.List(call.OldPlain, "networkInterfaces")
	for i, n := range rpc.List(call.Plain, "networkInterfaces") {
		nic, _ := n.(map[string]any)
		var old map[string]any
		if i < len(olds) {
			old, _ = olds[i].(map[string]any)
		}
		same := true
		for _, k := range []string{"hostname", "addresses", "mac"} {
			if !reflect.DeepEqual(nic[k], old[k]) {
				same = false
			}
		}
		id := rpc.Str(nic, "networkId")
		if same || id == "" {
			continue
		}
		for _, a := range rpc.List(nic, "addresses") {
			h := dhcpHost{networkID: id, ip: fmt.Sprint(a), mac: rpc.Str(nic, "mac"), hostname: rpc.Str(nic, "hostname")}
			if err := c.updateOrAddHost(h); err != nil {
				return nil, err
			}
		}
	}
	return call.Inputs.Copy(), nil
}

func (c *client) deleteDomain(call *rpc.Call) error {
	l, err := c.lv()
	if err != nil {
		return err
	}
	u, err := parseUUID(call.ID)
	if err != nil {
		return err
	}
	dom, err := l.DomainLookupByUUID(u)
	if err != nil {
		return fmt.Errorf("error retrieving libvirt domain by delete: %w", err)
	}
	state, _, err := l.DomainGetState(dom, 0)
	if err != nil {
		return fmt.Errorf("couldn't get info about domain: %w", err)
	}
	if s := libvirt.DomainState(state); s == libvirt.DomainRunning || s == libvirt.DomainPaused {
		if err := l.DomainDestroy(dom); err != nil {
			return fmt.Errorf("couldn't destroy libvirt domain: %w", err)
		}
	}
	flags := libvirt.DomainUndefineNvram | libvirt.DomainUndefineSnapshotsMetadata |
		libvirt.DomainUndefineManagedSave | libvirt.DomainUndefineCheckpointsMetadata
	if err := l.DomainUndefineFlags(dom, flags); err != nil {
		if isError(err, libvirt.ErrNoSupport) || isError(err, libvirt.ErrInvalidArg) {
			if err := l.DomainUndefine(dom); err != nil {
				return fmt.Errorf("couldn't undefine libvirt domain: %w", err)
			}
			return nil
		}
		return fmt.Errorf("couldn't undefine libvirt domain with flags: %w", err)
	}
	return nil
}

func main() {
	if len(os.Args) > 1 && (os.Args[1] == "domain-xml" || os.Args[1] == "network-xml") {
		os.Exit(offline(os.Args[1], os.Stdin, os.Stdout, os.Stderr))
	}
	rpc.Main("libvirt", &double{})
}
