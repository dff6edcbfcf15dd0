package facts

import (
	"os"
	"testing"
)

// The same cases as tests/unit/test_provider_facts.py: both readers of the file agree.
func TestReplacementsFollowTheFactsFile(t *testing.T) {
	text, err := os.ReadFile("../../../../components/provider_facts.json")
	if err != nil {
		t.Fatal(err)
	}
	UseForTests(text)
	domain, err := For("libvirt:index/domain:Domain")
	if err != nil {
		t.Fatal(err)
	}
	disk := func(fields ...any) map[string]any {
		m := map[string]any{}
		for i := 0; i < len(fields); i += 2 {
			m[fields[i].(string)] = fields[i+1]
		}
		return m
	}
	for _, c := range []struct {
		key      string
		old, new any
		replace  bool
	}{
		{"vcpu", 2.0, 4.0, true},
		{"vcpu", 2.0, 2.0, false},
		{"xml", map[string]any{"xslt": "a"}, map[string]any{"xslt": "b"}, true},
		{"disks", []any{disk("volumeId", "a")}, []any{disk("volumeId", "a"), disk("volumeId", "b")}, true},
		{"disks", []any{disk("volumeId", "a")}, []any{disk("volumeId", "b")}, false},
		{"disks", []any{disk("volumeId", "a")}, []any{disk("volumeId", "a", "scsi", true)}, true},
		{"disks", []any{disk("volumeId", "a")}, Unknown{}, true},
		{"cloudinit", "a", "b", false},
		{"kernel", "/a", "/b", false},
		{"memory", 1300.0, Unknown{}, true},
		{"networkInterfaces", []any{disk("networkId", "a")}, Unknown{}, false},
	} {
		if got := domain.ReplacedBy(c.key, c.old, c.new); got != c.replace {
			t.Errorf("%s %v -> %v: replace %v, want %v", c.key, c.old, c.new, got, c.replace)
		}
	}
	if !domain.Applies("cloudinit") || domain.Applies("kernel") {
		t.Error("cloudinit is applied in place, kernel is not")
	}
	volume, _ := For("libvirt:index/volume:Volume")
	if !volume.ReplacedBy("size", 1.0, 2.0) {
		t.Error("a volume replaces on any input")
	}
	if _, err := For("libvirt:index/nothing:Nothing"); err == nil {
		t.Error("a type without facts must be an error, not a guess")
	}
}
