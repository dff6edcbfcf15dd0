// dashboard-check FILE...: each file must decode as a Grafana dashboard under the strictest decoder we
// know, grafana-foundation-sdk's UnmarshalJSONStrict, with every panel and query plugin registered so
// panel options and queries are checked too: no unknown field, no wrong type, no missing required field.
// It prints every problem and exits 1 when a file has one.
package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/cog/plugins"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
)

func check(raw []byte) error {
	var board dashboard.Dashboard
	err := board.UnmarshalJSONStrict(raw)
	// Success comes back as an empty cog.BuildErrors inside a non-nil error interface.
	var list cog.BuildErrors
	if errors.As(err, &list) && len(list) == 0 {
		return nil
	}
	return err
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: dashboard-check FILE...")
		os.Exit(2)
	}
	plugins.RegisterDefaultPlugins()
	failed := false
	for _, path := range os.Args[1:] {
		raw, err := os.ReadFile(path)
		if err == nil {
			err = check(raw)
		}
		if err != nil {
			failed = true
			fmt.Printf("%s: %v\n", path, err)
			continue
		}
		fmt.Printf("%s: ok\n", path)
	}
	if failed {
		os.Exit(1)
	}
}
