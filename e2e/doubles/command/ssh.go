package main

// The SSH connection of command:remote:Command, as pulumi-command builds it
// (provider/pkg/provider/remote/connection.go, the version with hostKey and perDialTimeout, PR #794;
// schema defaults from the 1.2.1 SDK, pulumi_command/remote/_inputs.py):
//   - user defaults to "root", port to 22, dialErrorLimit to 10 (-1: unlimited), perDialTimeout to 15 s
//     (0: none); perDialTimeout is ssh.ClientConfig.Timeout, which bounds the TCP connect of a dial.
//   - Authentication: privateKey (with privateKeyPassword when given), then password (also as
//     keyboard-interactive), then the agent at agentSocketPath, or $SSH_AUTH_SOCK when that is unset;
//     an agent socket that cannot be dialled is an error.
//   - hostKey: parsed as an authorized_keys line (ssh.ParseAuthorizedKey); the server must present
//     exactly that key (ssh.FixedHostKey) and only its algorithm is offered (HostKeyAlgorithms); a
//     different key fails the dial. Without hostKey any key is accepted (ssh.InsecureIgnoreHostKey).
//   - Retries (dialWithRetry): every failed dial is retried until the number of dials exceeds
//     dialErrorLimit, waiting 100 ms, then 1.5 times longer each time, at most 5 s
//     (sdk/go/common/util/retry defaults); a host-key mismatch is a failed dial like any other, so it
//     fails after those retries. The error says "after N failed attempts".
//   - proxy: the proxy is dialled first with its own settings and limit, then a TCP connection is
//     opened through it to host:port and the SSH handshake runs over it, both with the target's limit;
//     errors are prefixed "proxy:".
//   - A session runs the command: `environment` with Setenv (a refusal fails the command), then
//     PULUMI_COMMAND_STDOUT/STDERR from the previous run when addPreviousOutputInEnv (default true; a
//     refusal is only a warning), `stdin` when non-empty; stdout and stderr are captured, logged as
//     status lines per `logging`, and stored without their last newline. A non-zero exit fails with
//     "<error>: running <command>:\n<stdout and stderr>" (remote/commandOutputs.go).

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"

	"github.com/pulumi/pulumi/sdk/v3/go/common/diag"
	"github.com/pulumi/pulumi/sdk/v3/go/common/util/retry"

	"hyperscaler/e2e/doubles/internal/rpc"
)

const (
	dialErrorDefault      = 10
	perDialTimeoutDefault = 15
)

type connection struct {
	host               string
	port               int
	user               string
	password           *string
	privateKey         *string
	privateKeyPassword *string
	agentSocketPath    *string
	dialErrorLimit     int
	perDialTimeout     int
	hostKey            *string
	proxy              *connection
}

var connectionKeys = []string{"host", "port", "user", "password", "privateKey", "privateKeyPassword",
	"agentSocketPath", "dialErrorLimit", "perDialTimeout", "hostKey"}

func optional(m map[string]any, k string) *string {
	if s, ok := m[k].(string); ok {
		return &s
	}
	return nil
}

func parseConnection(m map[string]any, allowProxy bool) (*connection, error) {
	allowed := connectionKeys
	if allowProxy {
		allowed = append(append([]string{}, connectionKeys...), "proxy")
	}
	if err := rpc.Unexpected(m, allowed...); err != nil {
		return nil, fmt.Errorf("connection: %w", err)
	}
	c := &connection{
		host: rpc.Str(m, "host"), port: 22, user: "root",
		password: optional(m, "password"), privateKey: optional(m, "privateKey"),
		privateKeyPassword: optional(m, "privateKeyPassword"), agentSocketPath: optional(m, "agentSocketPath"),
		dialErrorLimit: dialErrorDefault, perDialTimeout: perDialTimeoutDefault, hostKey: optional(m, "hostKey"),
	}
	if c.host == "" {
		return nil, fmt.Errorf("connection: host is required")
	}
	if u := rpc.Str(m, "user"); u != "" {
		c.user = u
	}
	if p, ok := rpc.Num(m, "port"); ok {
		c.port = int(p)
	}
	if n, ok := rpc.Num(m, "dialErrorLimit"); ok {
		c.dialErrorLimit = int(n)
	}
	if n, ok := rpc.Num(m, "perDialTimeout"); ok {
		c.perDialTimeout = int(n)
	}
	if p := rpc.Obj(m, "proxy"); p != nil {
		proxy, err := parseConnection(p, false)
		if err != nil {
			return nil, fmt.Errorf("proxy: %w", err)
		}
		c.proxy = proxy
	}
	return c, nil
}

func (c *connection) endpoint() string { return net.JoinHostPort(c.host, fmt.Sprint(c.port)) }

func (c *connection) sshConfig() (*ssh.ClientConfig, error) {
	config := &ssh.ClientConfig{
		User:    c.user,
		Timeout: time.Duration(c.perDialTimeout) * time.Second,
	}
	if c.hostKey != nil {
		key, _, _, _, err := ssh.ParseAuthorizedKey([]byte(*c.hostKey))
		if err != nil {
			return nil, fmt.Errorf("failed to parse host key: %w", err)
		}
		config.HostKeyCallback = ssh.FixedHostKey(key)
		config.HostKeyAlgorithms = []string{key.Type()}
	} else {
		config.HostKeyCallback = ssh.InsecureIgnoreHostKey() //nolint:gosec // the provider's own behaviour without hostKey
	}
	if c.privateKey != nil {
		var signer ssh.Signer
		var err error
		if c.privateKeyPassword != nil {
			signer, err = ssh.ParsePrivateKeyWithPassphrase([]byte(*c.privateKey), []byte(*c.privateKeyPassword))
		} else {
			signer, err = ssh.ParsePrivateKey([]byte(*c.privateKey))
		}
		if err != nil {
			return nil, err
		}
		config.Auth = append(config.Auth, ssh.PublicKeys(signer))
	}
	if c.password != nil {
		password := *c.password
		config.Auth = append(config.Auth, ssh.Password(password),
			ssh.KeyboardInteractive(func(_, _ string, questions []string, _ []bool) ([]string, error) {
				answers := make([]string, len(questions))
				for i := range answers {
					answers[i] = password
				}
				return answers, nil
			}))
	}
	socket := c.agentSocketPath
	if socket == nil {
		if env := os.Getenv("SSH_AUTH_SOCK"); env != "" {
			socket = &env
		}
	}
	if socket != nil {
		conn, err := net.Dial("unix", *socket)
		if err != nil {
			return nil, err
		}
		config.Auth = append(config.Auth, ssh.PublicKeysCallback(agent.NewClient(conn).Signers))
	}
	return config, nil
}

// dialWithRetry calls f until it succeeds or the number of dials exceeds limit (-1: no limit).
func dialWithRetry[T any](ctx context.Context, status func(string), what string, limit int, f func() (T, error)) (T, error) {
	var last error
	ok, data, err := retry.Until(ctx, retry.Acceptor{
		Accept: func(try int, _ time.Duration) (bool, any, error) {
			result, err := f()
			if err == nil {
				return true, result, nil
			}
			last = err
			dials := try + 1
			if limit > -1 && dials > limit {
				return true, nil, fmt.Errorf("after %d failed attempts: %w", try, err)
			}
			max := "inf"
			if limit > -1 {
				max = fmt.Sprint(limit)
			}
			status(fmt.Sprintf("%s %d/%s failed: retrying (%v)", what, dials, max, err))
			return false, nil, nil
		},
	})
	var zero T
	if ok && err == nil {
		return data.(T), nil
	}
	if err == nil {
		err = ctx.Err()
		if last != nil {
			err = fmt.Errorf("%w (last error: %v)", err, last)
		}
	}
	return zero, err
}

func (c *connection) dial(ctx context.Context, status func(string)) (*ssh.Client, error) {
	config, err := c.sshConfig()
	if err != nil {
		return nil, err
	}
	if c.proxy == nil {
		return dialWithRetry(ctx, status, "Dial", c.dialErrorLimit, func() (*ssh.Client, error) {
			return ssh.Dial("tcp", c.endpoint(), config)
		})
	}
	proxyConfig, err := c.proxy.sshConfig()
	if err != nil {
		return nil, fmt.Errorf("proxy: %w", err)
	}
	proxyClient, err := dialWithRetry(ctx, status, "Dial proxy", c.proxy.dialErrorLimit, func() (*ssh.Client, error) {
		return ssh.Dial("tcp", c.proxy.endpoint(), proxyConfig)
	})
	if err != nil {
		return nil, fmt.Errorf("proxy: %w", err)
	}
	client, err := dialWithRetry(ctx, status, "Dial from proxy", c.dialErrorLimit, func() (*ssh.Client, error) {
		// A fresh tunnel for every try: a handshake that failed has consumed its connection.
		conn, err := proxyClient.Dial("tcp", c.endpoint())
		if err != nil {
			return nil, err
		}
		sshConn, chans, reqs, err := ssh.NewClientConn(conn, c.endpoint(), config)
		if err != nil {
			conn.Close()
			return nil, err
		}
		return ssh.NewClient(sshConn, chans, reqs), nil
	})
	if err != nil {
		proxyClient.Close()
		return nil, fmt.Errorf("proxy: %w", err)
	}
	go func() { // the tunnel lives as long as the target connection
		_ = client.Wait()
		proxyClient.Close()
	}()
	return client, nil
}

// run is one execution of a command: its inputs and the outputs of the previous run.
type run struct {
	command     string
	environment map[string]string
	stdin       string
	prevStdout  string
	prevStderr  string
	addPrevious bool
	logging     string
}

type result struct{ stdout, stderr string }

// output collects a command's output the way pulumi-command does: stdout, stderr, both interleaved
// (for the error message), and status lines for the engine per `logging`.
type output struct {
	stdout, stderr, both bytes.Buffer
	mu                   sync.Mutex
	lines                *io.PipeWriter
	done                 chan struct{}
}

func newOutput(status func(string)) *output {
	r, w := io.Pipe()
	o := &output{lines: w, done: make(chan struct{})}
	go func() {
		defer close(o.done)
		scanner := bufio.NewScanner(r)
		scanner.Buffer(make([]byte, 64*1024), 1024*1024)
		for scanner.Scan() {
			status(scanner.Text())
		}
		_, _ = io.Copy(io.Discard, r)
	}()
	return o
}

type tee struct {
	o    *output
	own  *bytes.Buffer
	show bool
}

func (t tee) Write(p []byte) (int, error) {
	t.o.mu.Lock()
	defer t.o.mu.Unlock()
	t.own.Write(p)
	t.o.both.Write(p)
	if t.show {
		_, _ = t.o.lines.Write(p)
	}
	return len(p), nil
}

func (o *output) writers(logging string) (io.Writer, io.Writer) {
	showOut := logging == "" || logging == "stdout" || logging == "stdoutAndStderr"
	showErr := logging == "" || logging == "stderr" || logging == "stdoutAndStderr"
	return tee{o, &o.stdout, showOut}, tee{o, &o.stderr, showErr}
}

func (o *output) finish(err error, command string) (result, error) {
	o.lines.Close()
	<-o.done
	if err != nil {
		return result{}, fmt.Errorf("%w: running %q:\n%s", err, command, o.both.String())
	}
	return result{strings.TrimSuffix(o.stdout.String(), "\n"), strings.TrimSuffix(o.stderr.String(), "\n")}, nil
}

func (c *connection) execute(ctx context.Context, call *rpc.Call, r run) (result, error) {
	client, err := c.dial(ctx, func(msg string) { call.Status(ctx, msg) })
	if err != nil {
		return result{}, err
	}
	defer client.Close()
	session, err := client.NewSession()
	if err != nil {
		return result{}, err
	}
	defer session.Close()
	keys := make([]string, 0, len(r.environment))
	for k := range r.environment {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if err := session.Setenv(k, r.environment[k]); err != nil {
			msg := fmt.Sprintf("Unable to set '%s'. This only works if your SSH server is configured to accept "+
				"these variables via AcceptEnv.", k)
			call.Log(ctx, diag.Error, msg)
			return result{}, fmt.Errorf("could not set environment variable %q: %w", k, err)
		}
	}
	if r.addPrevious {
		for k, v := range map[string]string{"PULUMI_COMMAND_STDOUT": r.prevStdout, "PULUMI_COMMAND_STDERR": r.prevStderr} {
			if v == "" {
				continue
			}
			if err := session.Setenv(k, v); err != nil {
				call.Log(ctx, diag.Warning, fmt.Sprintf("Unable to set '%s'. This only works if your SSH server is "+
					"configured to accept these variables via AcceptEnv.", k))
			}
		}
	}
	if r.stdin != "" {
		session.Stdin = strings.NewReader(r.stdin)
	}
	out := newOutput(func(line string) { call.Status(ctx, line) })
	session.Stdout, session.Stderr = out.writers(r.logging)
	finished := make(chan error, 1)
	go func() { finished <- session.Run(r.command) }()
	select {
	case err = <-finished:
	case <-ctx.Done():
		_ = session.Signal(ssh.SIGTERM)
		client.Close()
		err = fmt.Errorf("cancelled: %w", ctx.Err())
	}
	return out.finish(err, r.command)
}
