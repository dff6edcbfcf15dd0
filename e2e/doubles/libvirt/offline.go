package main

// Offline entry points, for tests that need the provider's XML without a libvirtd:
//
//	pulumi-resource-libvirt domain-xml  < {"inputs": {Domain inputs}, "volumes": {key: {Volume inputs}},
//	                                        "networks": {id: {Network inputs}},
//	                                        "capabilities": {"arch": "x86_64", "machines": {"q35": "pc-q35-7.2"}},
//	                                        "transform": true}
//	pulumi-resource-libvirt network-xml < {"inputs": {Network inputs}, "transform": true}
//	pulumi-resource-libvirt domain-xml xslt < {"xml": "...", "xslt": "..."}   (transformXML alone)
//
// Inputs are the engine's (camelCase, as the program registers them). What the provider would ask
// libvirt is answered from the given tables: a volume's pool, name and format from its Volume inputs
// (format defaulting to qcow2, newDefVolume's), its path from its key (a dir pool's volume key is its
// path), a network's name and HasDHCP from its Network inputs, the canonical machine name from
// `capabilities`. The XML is printed on stdout; with "transform" the resource's xml.xslt is applied
// (transformXML), without it the document the provider hands to xsltproc is printed.

import (
	"encoding/json"
	"fmt"
	"io"

	"hyperscaler/e2e/doubles/internal/rpc"
)

type offlineRequest struct {
	Inputs       map[string]any            `json:"inputs"`
	Volumes      map[string]map[string]any `json:"volumes"`
	Networks     map[string]map[string]any `json:"networks"`
	Capabilities struct {
		Arch     string            `json:"arch"`
		Machines map[string]string `json:"machines"`
	} `json:"capabilities"`
	Transform bool   `json:"transform"`
	XML       string `json:"xml"`
	XSLT      string `json:"xslt"`
}

type tables offlineRequest

func (t *tables) volume(key string) (string, string, string, error) {
	v, ok := t.Volumes[key]
	if !ok {
		return "", "", "", fmt.Errorf("no volume with key %s", key)
	}
	pool, format := rpc.Str(v, "pool"), rpc.Str(v, "format")
	if pool == "" {
		pool = "default"
	}
	if format == "" {
		format = "qcow2"
	}
	return pool, rpc.Str(v, "name"), format, nil
}

func (t *tables) volumePath(key string) (string, error) { return key, nil }

func (t *tables) network(id string) (string, bool, error) {
	n, ok := t.Networks[id]
	if !ok {
		return "", false, fmt.Errorf("no network with id %s", id)
	}
	def, err := networkDef(n)
	if err != nil {
		return "", false, err
	}
	return def.Name, hasDHCP(*def), nil
}

func (t *tables) canonicalMachine(arch, machine string) (string, error) {
	if arch != t.Capabilities.Arch {
		return "", fmt.Errorf("no hvm guest for %s in the given capabilities", arch)
	}
	if m, ok := t.Capabilities.Machines[machine]; ok {
		return m, nil
	}
	return "", fmt.Errorf("cannot find machine type %s for hvm/%s in the given capabilities", machine, arch)
}

func (t *tables) hostArch() (string, error) { return t.Capabilities.Arch, nil }

func offline(what string, stdin io.Reader, stdout, stderr io.Writer) int {
	var req offlineRequest
	if err := json.NewDecoder(stdin).Decode(&req); err != nil {
		fmt.Fprintf(stderr, "%s: reading the request: %v\n", what, err)
		return 2
	}
	var doc string
	var err error
	switch {
	case req.XSLT != "" || req.XML != "":
		doc, err = transformXML(req.XML, req.XSLT)
	case what == "domain-xml":
		t := tables(req)
		var d any
		d, _, err = domainDef(req.Inputs, &t)
		if err == nil {
			doc, err = xmlMarshallIndented(d)
		}
	default:
		var n any
		n, err = networkDef(req.Inputs)
		if err == nil {
			doc, err = xmlMarshallIndented(n)
		}
	}
	if err == nil && req.Transform {
		doc, err = transformXML(doc, rpc.Str(rpc.Obj(req.Inputs, "xml"), "xslt"))
	}
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", what, err)
		return 1
	}
	fmt.Fprint(stdout, doc)
	return 0
}
