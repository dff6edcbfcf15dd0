package main

import (
	"context"
	"crypto/ed25519"
	"encoding/pem"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/pulumi/pulumi/sdk/v3/go/common/diag"

	"hyperscaler/e2e/doubles/internal/facts"
	"hyperscaler/e2e/doubles/internal/rpc"
)

type logged struct {
	mu    sync.Mutex
	lines []string
}

func (l *logged) call() *rpc.Call {
	return rpc.NewCall(remoteType, func(sev diag.Severity, msg string, _ bool) {
		l.mu.Lock()
		defer l.mu.Unlock()
		l.lines = append(l.lines, string(sev)+": "+msg)
	})
}

func (l *logged) text() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

func privatePEM(t *testing.T, key ed25519.PrivateKey) string {
	t.Helper()
	block, err := ssh.MarshalPrivateKey(key, "")
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(block))
}

func connectionTo(s *testServer, key string, hostKey string) map[string]any {
	host, _, _ := net.SplitHostPort(s.addr)
	c := map[string]any{"host": host, "port": float64(s.port()), "user": "root", "privateKey": key,
		"dialErrorLimit": float64(1), "perDialTimeout": float64(2)}
	if hostKey != "" {
		c["hostKey"] = hostKey
	}
	return c
}

func TestPinnedHostKeyRunsTheCommandWithStdinAndEnvironment(t *testing.T) {
	clientSigner, clientKey := newKey(t)
	s := startServer(t, clientSigner.PublicKey(), "", "GREETING", "PULUMI_COMMAND_STDOUT")
	l := &logged{}
	in := map[string]any{
		"connection":  connectionTo(s, privatePEM(t, clientKey), authorizedLine(s.hostKey)),
		"environment": map[string]any{"GREETING": "hello"},
		"stdin":       "from stdin\n",
	}
	res, err := execute(context.Background(), l.call(), remoteType, `echo "$GREETING"; cat; echo err >&2`, in,
		map[string]any{"stdout": "before"})
	if err != nil {
		t.Fatal(err)
	}
	if res.stdout != "hello\nfrom stdin" || res.stderr != "err" {
		t.Fatalf("stdout %q stderr %q", res.stdout, res.stderr)
	}
	if got := s.envSeen[0]["PULUMI_COMMAND_STDOUT"]; got != "before" {
		t.Fatalf("previous stdout not in the environment: %q", got)
	}
	// logging defaults to stdout and stderr, as status lines
	if !strings.Contains(l.text(), "hello") || !strings.Contains(l.text(), "err") {
		t.Fatalf("output not logged: %s", l.text())
	}
}

func TestAnotherHostKeyFailsAfterTheRetries(t *testing.T) {
	clientSigner, clientKey := newKey(t)
	s := startServer(t, clientSigner.PublicKey(), "")
	impostor, _ := newKey(t)
	in := map[string]any{"connection": connectionTo(s, privatePEM(t, clientKey), authorizedLine(impostor))}
	_, err := execute(context.Background(), (&logged{}).call(), remoteType, "touch /nonexistent/ran", in, nil)
	if err == nil {
		t.Fatal("a server presenting another host key was accepted")
	}
	// dialErrorLimit 1: two dials, then the error (connection.go dialWithRetry).
	if !strings.Contains(err.Error(), "after 1 failed attempts") || !strings.Contains(err.Error(), "host key mismatch") {
		t.Fatalf("unexpected error: %v", err)
	}
	if s.logins.Load() != 0 {
		t.Fatalf("the client logged in to an impostor %d times", s.logins.Load())
	}
}

func TestAHostKeyThatIsNotAnAuthorizedKeysLineIsRefused(t *testing.T) {
	clientSigner, clientKey := newKey(t)
	s := startServer(t, clientSigner.PublicKey(), "")
	in := map[string]any{"connection": connectionTo(s, privatePEM(t, clientKey), "not a key")}
	_, err := execute(context.Background(), (&logged{}).call(), remoteType, "true", in, nil)
	if err == nil || !strings.Contains(err.Error(), "failed to parse host key") {
		t.Fatalf("unexpected error: %v", err)
	}
}

func TestDialsAreRetriedWithTheProvidersBackoffUntilTheServerAnswers(t *testing.T) {
	clientSigner, clientKey := newKey(t)
	// Reserve a port, close it: the first dials are refused, then the server comes up there.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	started := make(chan *testServer, 1)
	go func() {
		time.Sleep(1200 * time.Millisecond)
		started <- startServer(t, clientSigner.PublicKey(), addr)
	}()
	host, port, _ := net.SplitHostPort(addr)
	in := map[string]any{"connection": map[string]any{"host": host, "port": mustFloat(t, port), "privateKey": privatePEM(t, clientKey)}}
	lg := &logged{}
	begin := time.Now()
	res, err := execute(context.Background(), lg.call(), remoteType, "echo up", in, nil)
	if err != nil {
		t.Fatal(err)
	}
	s := <-started
	if res.stdout != "up" || s.logins.Load() != 1 {
		t.Fatalf("stdout %q logins %d", res.stdout, s.logins.Load())
	}
	// 100 ms, x1.5 each time: 0.1+0.15+0.225+0.3375+0.506 = 1.32 s after the first dial at the 6th.
	if elapsed := time.Since(begin); elapsed < 1200*time.Millisecond || elapsed > 20*time.Second {
		t.Fatalf("took %s", elapsed)
	}
	if !strings.Contains(lg.text(), "Dial 1/10 failed: retrying") {
		t.Fatalf("no retry status lines: %s", lg.text())
	}
}

func mustFloat(t *testing.T, s string) float64 {
	t.Helper()
	n := 0
	for _, c := range s {
		n = n*10 + int(c-'0')
	}
	return float64(n)
}

func TestTheDialErrorLimitEndsTheRetries(t *testing.T) {
	_, clientKey := newKey(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	host, port, _ := net.SplitHostPort(l.Addr().String())
	l.Close()
	in := map[string]any{"connection": map[string]any{"host": host, "port": mustFloat(t, port),
		"privateKey": privatePEM(t, clientKey), "dialErrorLimit": float64(3)}}
	begin := time.Now()
	_, err = execute(context.Background(), (&logged{}).call(), remoteType, "true", in, nil)
	if err == nil || !strings.Contains(err.Error(), "after 3 failed attempts") {
		t.Fatalf("unexpected error: %v", err)
	}
	// four dials, waits of 0.1 + 0.15 + 0.225 s
	if elapsed := time.Since(begin); elapsed < 450*time.Millisecond || elapsed > 10*time.Second {
		t.Fatalf("took %s", elapsed)
	}
}

func TestTheProxyIsDialledWithItsOwnHostKey(t *testing.T) {
	clientSigner, clientKey := newKey(t)
	target := startServer(t, clientSigner.PublicKey(), "")
	jump := startServer(t, clientSigner.PublicKey(), "")
	key := privatePEM(t, clientKey)
	conn := connectionTo(target, key, authorizedLine(target.hostKey))
	conn["proxy"] = connectionTo(jump, key, authorizedLine(jump.hostKey))
	res, err := execute(context.Background(), (&logged{}).call(), remoteType, "echo through", map[string]any{"connection": conn}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.stdout != "through" || jump.logins.Load() != 1 || target.logins.Load() != 1 {
		t.Fatalf("stdout %q jump logins %d target logins %d", res.stdout, jump.logins.Load(), target.logins.Load())
	}
	// A jump host presenting another key: nothing reaches the target.
	impostor, _ := newKey(t)
	conn["proxy"] = connectionTo(jump, key, authorizedLine(impostor))
	_, err = execute(context.Background(), (&logged{}).call(), remoteType, "echo through", map[string]any{"connection": conn}, nil)
	if err == nil || !strings.HasPrefix(err.Error(), "proxy:") || !strings.Contains(err.Error(), "host key mismatch") {
		t.Fatalf("unexpected error: %v", err)
	}
	if target.logins.Load() != 1 {
		t.Fatal("the target was reached through an unverified jump host")
	}
}

func TestANonZeroExitFailsWithTheOutput(t *testing.T) {
	clientSigner, clientKey := newKey(t)
	s := startServer(t, clientSigner.PublicKey(), "")
	in := map[string]any{"connection": connectionTo(s, privatePEM(t, clientKey), authorizedLine(s.hostKey))}
	_, err := execute(context.Background(), (&logged{}).call(), remoteType, "echo partial; echo broken >&2; exit 3", in, nil)
	if err == nil {
		t.Fatal("exit 3 did not fail")
	}
	for _, want := range []string{"exited with status 3", `running "echo partial; echo broken >&2; exit 3"`, "partial", "broken"} {
		if !strings.Contains(err.Error(), want) {
			t.Fatalf("%q not in %v", want, err)
		}
	}
}

func TestAnEnvironmentTheServerRefusesFailsTheCommand(t *testing.T) {
	clientSigner, clientKey := newKey(t)
	s := startServer(t, clientSigner.PublicKey(), "") // accepts no variable
	in := map[string]any{
		"connection":  connectionTo(s, privatePEM(t, clientKey), authorizedLine(s.hostKey)),
		"environment": map[string]any{"NOT_ACCEPTED": "x"},
	}
	_, err := execute(context.Background(), (&logged{}).call(), remoteType, "true", in, nil)
	if err == nil || !strings.Contains(err.Error(), `could not set environment variable "NOT_ACCEPTED"`) {
		t.Fatalf("unexpected error: %v", err)
	}
	// The previous outputs are only a warning when refused.
	lg := &logged{}
	delete(in, "environment")
	if _, err := execute(context.Background(), lg.call(), remoteType, "true", in, map[string]any{"stdout": "x"}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(lg.text(), "warning: Unable to set 'PULUMI_COMMAND_STDOUT'") {
		t.Fatalf("no warning: %s", lg.text())
	}
}

func TestLocalCommandsRunInTheirDirectoryWithTheirEnvironment(t *testing.T) {
	dir := t.TempDir()
	in := map[string]any{"dir": dir, "environment": map[string]any{"X": "1"}, "stdin": "in\n"}
	c := rpc.NewCall(localType, func(diag.Severity, string, bool) {})
	res, err := execute(context.Background(), c, localType, `pwd; echo "$X"; cat; echo "$PULUMI_COMMAND_STDERR"`, in,
		map[string]any{"stderr": "old"})
	if err != nil {
		t.Fatal(err)
	}
	if res.stdout != dir+"\n1\nin\nold" {
		t.Fatalf("stdout %q", res.stdout)
	}
}

func loadFacts(t *testing.T) {
	t.Helper()
	text, err := os.ReadFile("../../../components/provider_facts.json")
	if err != nil {
		t.Fatal(err)
	}
	facts.UseForTests(text)
}

func TestTriggersReplaceAndEverythingElseUpdates(t *testing.T) {
	loadFacts(t)
	old := map[string]any{"create": "a", "triggers": []any{"h1", "dom-1"}, "connection": map[string]any{"host": "x"}}
	same, _ := rpc.DiffInputs(remoteType, old, old)
	if len(same.GetDiffs()) != 0 {
		t.Fatalf("no change reported %v", same.GetDiffs())
	}
	changed := map[string]any{"create": "b", "triggers": []any{"h1", "dom-1"}, "connection": map[string]any{"host": "y"}}
	d, _ := rpc.DiffInputs(remoteType, old, changed)
	if len(d.GetReplaces()) != 0 || len(d.GetDiffs()) != 2 {
		t.Fatalf("create and connection must update in place: %v / %v", d.GetDiffs(), d.GetReplaces())
	}
	// A replaced VM: the engine sets the triggers that carry its domain id to unknown and asks Diff;
	// the answer must be a replacement, so that the Command (a drain, say) is deleted before the VM.
	unknown := map[string]any{"create": "a", "triggers": facts.Unknown{}, "connection": map[string]any{"host": "x"}}
	d, _ = rpc.DiffInputs(remoteType, old, unknown)
	if len(d.GetReplaces()) != 1 || d.GetReplaces()[0] != "triggers" {
		t.Fatalf("unknown triggers must replace: %v", d.GetReplaces())
	}
}
