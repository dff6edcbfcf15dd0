// pulumi-resource-command (double): command:remote:Command and command:local:Command of pulumi-command
// 1.2.1, which really run their commands. The real plugin cannot be built here (the Go module proxy
// refuses it, docs/testing.md); users get it from Pulumi.
//
// Lifecycle (provider/pkg/provider/{remote,local}/commandController.go):
//   - Create runs `create` (nothing when it is unset) and stores the inputs plus `stdout` and `stderr`;
//     in a preview nothing runs and both outputs are unknown.
//   - Update runs `update`, or `create` when no update is set, with the new inputs (the new connection)
//     and the previous run's outputs in PULUMI_COMMAND_STDOUT/STDERR; a preview runs nothing.
//   - Delete runs `delete` when it is set, with the inputs and outputs kept in the state (the old
//     connection), and the last outputs in PULUMI_COMMAND_STDOUT/STDERR.
//   - A failed command fails the operation: a failed Create stores nothing, a failed Update keeps the
//     old state, a failed Delete keeps the resource.
//   - Diff: `triggers` replace (the 1.2.1 SDK declares replace_on_changes=["triggers[*]"]), any other
//     change is an update (components/provider_facts.json).
//
// Not reproduced, and refused by Check: the `copy` resources, local assetPaths/archivePaths, and any
// input this file does not name. stdout/stderr are plain outputs, as in the provider: a secret stdin
// does not make them secret.
package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strings"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"

	"hyperscaler/e2e/doubles/internal/facts"
	"hyperscaler/e2e/doubles/internal/rpc"
)

const (
	remoteType = "command:remote:Command"
	localType  = "command:local:Command"
)

type command struct{}

func (command) Types() []string { return []string{remoteType, localType} }

var commonKeys = []string{"create", "update", "delete", "environment", "stdin", "triggers", "logging",
	"addPreviousOutputInEnv"}

func (command) Check(token string, in map[string]any) error {
	switch token {
	case remoteType:
		if err := rpc.Unexpected(in, append([]string{"connection"}, commonKeys...)...); err != nil {
			return err
		}
		conn := rpc.Obj(in, "connection")
		if conn == nil {
			if facts.ContainsUnknown(in["connection"]) {
				return nil
			}
			return fmt.Errorf("connection is required")
		}
		if facts.ContainsUnknown(conn) {
			return nil
		}
		if _, err := parseConnection(conn, true); err != nil {
			return err
		}
	case localType:
		if err := rpc.Unexpected(in, append([]string{"dir", "interpreter"}, commonKeys...)...); err != nil {
			return err
		}
	}
	switch rpc.Str(in, "logging") {
	case "", "stdout", "stderr", "stdoutAndStderr", "none":
	default:
		return fmt.Errorf("logging must be stdout, stderr, stdoutAndStderr or none, not %q", rpc.Str(in, "logging"))
	}
	return nil
}

func environment(in map[string]any) map[string]string {
	env := map[string]string{}
	for k, v := range rpc.Obj(in, "environment") {
		env[k] = fmt.Sprint(v)
	}
	return env
}

// execute runs cmd with the inputs `in` and the previous outputs `prev` (nil on create).
func execute(ctx context.Context, c *rpc.Call, typ, cmd string, in, prev map[string]any) (result, error) {
	r := run{
		command: cmd, environment: environment(in), stdin: rpc.Str(in, "stdin"),
		addPrevious: rpc.Bool(in, "addPreviousOutputInEnv", true), logging: rpc.Str(in, "logging"),
	}
	if prev != nil {
		r.prevStdout, r.prevStderr = rpc.Str(prev, "stdout"), rpc.Str(prev, "stderr")
	}
	if typ == localType {
		return runLocal(ctx, c, r, in)
	}
	conn, err := parseConnection(rpc.Obj(in, "connection"), true)
	if err != nil {
		return result{}, err
	}
	return conn.execute(ctx, c, r)
}

func outputs(inputs resource.PropertyMap, res result) resource.PropertyMap {
	return rpc.WithOutputs(inputs, map[string]resource.PropertyValue{
		"stdout": resource.NewProperty(res.stdout), "stderr": resource.NewProperty(res.stderr),
	})
}

func newID() (string, error) {
	id, err := resource.NewUniqueHex("", 8, 0)
	return id, err
}

func (command) Create(ctx context.Context, c *rpc.Call) (string, resource.PropertyMap, error) {
	id, err := newID()
	if err != nil {
		return "", nil, err
	}
	if c.Preview {
		return id, rpc.WithOutputs(c.Inputs, map[string]resource.PropertyValue{
			"stdout": rpc.Unknown(), "stderr": rpc.Unknown(),
		}), nil
	}
	create := rpc.Str(c.Plain, "create")
	if create == "" {
		return id, outputs(c.Inputs, result{}), nil
	}
	res, err := execute(ctx, c, c.Type, create, c.Plain, nil)
	if err != nil {
		return "", nil, err
	}
	return id, outputs(c.Inputs, res), nil
}

func (command) Update(ctx context.Context, c *rpc.Call, _ []string) (resource.PropertyMap, error) {
	prev := result{rpc.Str(c.OldPlain, "stdout"), rpc.Str(c.OldPlain, "stderr")}
	if c.Preview {
		return rpc.WithOutputs(c.Inputs, map[string]resource.PropertyValue{
			"stdout": rpc.Unknown(), "stderr": rpc.Unknown(),
		}), nil
	}
	cmd := rpc.Str(c.Plain, "update")
	if cmd == "" {
		cmd = rpc.Str(c.Plain, "create")
	}
	if cmd == "" {
		return outputs(c.Inputs, prev), nil
	}
	res, err := execute(ctx, c, c.Type, cmd, c.Plain, c.OldPlain)
	if err != nil {
		return nil, err
	}
	return outputs(c.Inputs, res), nil
}

func (command) Delete(ctx context.Context, c *rpc.Call) error {
	cmd := rpc.Str(c.OldPlain, "delete")
	if cmd == "" {
		return nil
	}
	_, err := execute(ctx, c, c.Type, cmd, c.OldPlain, c.OldPlain)
	return err
}

// runLocal follows provider/pkg/provider/local/commandOutputs.go run: interpreter (default
// ["/bin/sh", "-c"]) plus the command, in `dir` (default: the provider's working directory), with the
// provider's environment plus `environment` and the previous outputs.
func runLocal(ctx context.Context, c *rpc.Call, r run, in map[string]any) (result, error) {
	args := []string{"/bin/sh", "-c"}
	if interp := rpc.List(in, "interpreter"); len(interp) > 0 {
		args = args[:0]
		for _, a := range interp {
			args = append(args, fmt.Sprint(a))
		}
	}
	args = append(args, r.command)
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	if dir := rpc.Str(in, "dir"); dir != "" {
		cmd.Dir = dir
	}
	cmd.Env = os.Environ()
	keys := make([]string, 0, len(r.environment))
	for k := range r.environment {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		cmd.Env = append(cmd.Env, k+"="+r.environment[k])
	}
	if r.addPrevious {
		if r.prevStdout != "" {
			cmd.Env = append(cmd.Env, "PULUMI_COMMAND_STDOUT="+r.prevStdout)
		}
		if r.prevStderr != "" {
			cmd.Env = append(cmd.Env, "PULUMI_COMMAND_STDERR="+r.prevStderr)
		}
	}
	if r.stdin != "" {
		cmd.Stdin = strings.NewReader(r.stdin)
	}
	out := newOutput(func(line string) { c.Status(ctx, line) })
	cmd.Stdout, cmd.Stderr = out.writers(r.logging)
	return out.finish(cmd.Run(), r.command)
}

func main() { rpc.Main("command", command{}) }
