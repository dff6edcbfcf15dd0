// Package facts reads components/provider_facts.json, the one place that says which input changes make
// each provider replace a resource and which ones it applies in place (its sources are cited in that
// file). `hyperscaler diff` reads the same file through components/provider_facts.py; the doubles get
// it from the build: e2e/build_engine.py stamps its bytes into the binary (-ldflags -X ...encoded=),
// so a double always answers Diff with the facts of the checkout it was built from. This package
// follows provider_facts.py's ResourceFacts.replaced_by rule for rule.
package facts

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"reflect"
	"sync"
)

// encoded is components/provider_facts.json, base64, set by the linker (e2e/build_engine.py).
var encoded string

// Resource holds one resource type's facts.
type Resource struct {
	ReplaceAll     bool
	Replace        map[string]bool
	ReplaceOnCount map[string][]string // list input -> fields whose change replaces
	ReplaceNested  map[string][]string // object input -> fields whose change replaces
	AppliedAll     bool
	Applied        map[string]bool
}

// Unknown stands for a value the engine does not know yet (a preview, or the dependents of a
// delete-before-replace, whose inputs the engine sets to unknown before it asks Diff).
type Unknown struct{}

type raw struct {
	Resources map[string]struct {
		Replace        json.RawMessage     `json:"replace"`
		ReplaceOnCount map[string][]string `json:"replace_on_count"`
		ReplaceNested  map[string][]string `json:"replace_nested"`
		Applied        json.RawMessage     `json:"applied_in_place"`
	} `json:"resources"`
}

// starOrList decodes "*" (all) or a list of names.
func starOrList(msg json.RawMessage) (bool, map[string]bool, error) {
	out := map[string]bool{}
	if len(msg) == 0 {
		return false, out, nil
	}
	var star string
	if json.Unmarshal(msg, &star) == nil {
		if star != "*" {
			return false, nil, fmt.Errorf("expected \"*\" or a list, got %q", star)
		}
		return true, out, nil
	}
	var names []string
	if err := json.Unmarshal(msg, &names); err != nil {
		return false, nil, err
	}
	for _, n := range names {
		out[n] = true
	}
	return false, out, nil
}

// Parse reads the JSON text of provider_facts.json.
func Parse(text []byte) (map[string]Resource, error) {
	var r raw
	if err := json.Unmarshal(text, &r); err != nil {
		return nil, fmt.Errorf("provider_facts.json: %w", err)
	}
	out := map[string]Resource{}
	for token, entry := range r.Resources {
		replaceAll, replace, err := starOrList(entry.Replace)
		if err != nil {
			return nil, fmt.Errorf("provider_facts.json %s.replace: %w", token, err)
		}
		appliedAll, applied, err := starOrList(entry.Applied)
		if err != nil {
			return nil, fmt.Errorf("provider_facts.json %s.applied_in_place: %w", token, err)
		}
		out[token] = Resource{
			ReplaceAll: replaceAll, Replace: replace,
			ReplaceOnCount: entry.ReplaceOnCount, ReplaceNested: entry.ReplaceNested,
			AppliedAll: appliedAll, Applied: applied,
		}
	}
	return out, nil
}

var (
	loadOnce sync.Once
	loaded   map[string]Resource
	loadErr  error
)

// All returns the facts stamped into this binary; it fails when the build did not stamp them.
func All() (map[string]Resource, error) {
	loadOnce.Do(func() {
		if encoded == "" {
			loadErr = fmt.Errorf("this double was built without components/provider_facts.json " +
				"(build it with e2e/build_engine.py, which stamps the file in)")
			return
		}
		text, err := base64.StdEncoding.DecodeString(encoded)
		if err != nil {
			loadErr = fmt.Errorf("stamped provider facts: %w", err)
			return
		}
		loaded, loadErr = Parse(text)
	})
	return loaded, loadErr
}

// UseForTests replaces the stamped facts (Go tests, which are not linked by build_engine.py).
func UseForTests(text []byte) {
	loadOnce.Do(func() {})
	loaded, loadErr = Parse(text)
}

// For returns one type's facts, or an error naming the type when the file has none: a double never
// guesses what a provider replaces.
func For(token string) (Resource, error) {
	all, err := All()
	if err != nil {
		return Resource{}, err
	}
	r, ok := all[token]
	if !ok {
		return Resource{}, fmt.Errorf("components/provider_facts.json has no facts for %s", token)
	}
	return r, nil
}

// ContainsUnknown reports whether v is, or holds, an Unknown.
func ContainsUnknown(v any) bool {
	switch t := v.(type) {
	case Unknown:
		return true
	case map[string]any:
		for _, e := range t {
			if ContainsUnknown(e) {
				return true
			}
		}
	case []any:
		for _, e := range t {
			if ContainsUnknown(e) {
				return true
			}
		}
	}
	return false
}

func field(v any, name string) any {
	if m, ok := v.(map[string]any); ok {
		return m[name]
	}
	return nil
}

// changed: an unknown value may turn out to be anything, so it counts as a change.
func changed(old, new any) bool {
	return ContainsUnknown(new) || !reflect.DeepEqual(old, new)
}

// ReplacedBy says whether changing input key from old to new replaces the resource (as
// provider_facts.py's replaced_by; an unknown counts as a change, and an unknown list whose length
// cannot be known replaces when its length would).
func (r Resource) ReplacedBy(key string, old, new any) bool {
	if !changed(old, new) {
		return false
	}
	if r.ReplaceAll || r.Replace[key] {
		return true
	}
	if fields, ok := r.ReplaceOnCount[key]; ok {
		olds, okOld := old.([]any)
		news, okNew := new.([]any)
		if (old != nil && !okOld) || (new != nil && !okNew) || len(olds) != len(news) {
			return true // an unknown list, or a new length
		}
		for i := range olds {
			for _, f := range fields {
				if changed(field(olds[i], f), field(news[i], f)) {
					return true
				}
			}
		}
		return false
	}
	if fields, ok := r.ReplaceNested[key]; ok {
		if _, unknown := new.(Unknown); unknown {
			return true
		}
		for _, f := range fields {
			if changed(field(old, f), field(new, f)) {
				return true
			}
		}
	}
	return false
}

// Applies says whether the provider applies an in-place change of key to the real object.
func (r Resource) Applies(key string) bool { return r.AppliedAll || r.Applied[key] }
