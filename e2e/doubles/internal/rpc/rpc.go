// Package rpc is the gRPC side shared by hyperscaler's provider doubles (e2e/doubles/{command,random,libvirt}):
// the Pulumi resource-provider protocol, a Diff that follows components/provider_facts.json, and the
// conversion between the engine's property maps and plain Go values.
//
// What every double does the same way:
//   - Handshake/Configure: secrets are accepted as secrets (so a secret input stays secret in the
//     state the double returns), resources and output values are not (the engine sends plain values,
//     unknowns and secrets instead).
//   - Check returns the inputs unchanged after the double's own validation: an input the double cannot
//     reproduce fails there, at preview, never later and never silently.
//   - Diff compares the old inputs with the new ones (secrets unwrapped: a value that only became
//     secret is no change) and marks as replacements exactly what the facts file says; an unknown new
//     value counts as a change, which is how the engine learns that the dependents of a
//     delete-before-replace resource must go first (pkg/resource/deploy/step_generator.go
//     calculateDependentReplacements sets the inputs that depend on the replaced resource to unknown
//     and asks Diff).
//   - Read (refresh, import) is not reproduced and fails loudly.
package rpc

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"sync"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/pulumi/pulumi/sdk/v3/go/common/diag"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource/plugin"
	"github.com/pulumi/pulumi/sdk/v3/go/common/util/cmdutil"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi/provider"
	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"

	"hyperscaler/e2e/doubles/internal/facts"
)

// Call is one lifecycle request, with its inputs both as the engine sent them (secrets kept, for the
// state the double returns) and as plain Go values (for the double's own work).
type Call struct {
	URN      string
	Type     string
	ID       string
	Preview  bool
	Inputs   resource.PropertyMap // new inputs (Create, Update)
	Plain    map[string]any
	Olds     resource.PropertyMap // the state (Update, Delete): old inputs and outputs
	OldPlain map[string]any
	log      func(ctx context.Context, sev diag.Severity, msg string, ephemeral bool)
}

// NewCall is a Call outside the engine (Go tests): log receives its diagnostics and status lines.
func NewCall(typ string, log func(sev diag.Severity, msg string, ephemeral bool)) *Call {
	return &Call{Type: typ, log: func(_ context.Context, sev diag.Severity, msg string, ephemeral bool) {
		log(sev, msg, ephemeral)
	}}
}

// Log writes a diagnostic on the resource (shown by `pulumi up`, and in --event-log).
func (c *Call) Log(ctx context.Context, sev diag.Severity, msg string) { c.log(ctx, sev, msg, false) }

// Status writes an ephemeral status line on the resource (the Info column of the progress display).
func (c *Call) Status(ctx context.Context, msg string) { c.log(ctx, diag.Info, msg, true) }

// Handler implements the resource types of one double.
type Handler interface {
	// Types lists the tokens the double serves.
	Types() []string
	// Check validates the plain inputs of a resource of type token.
	Check(token string, plain map[string]any) error
	// Create returns the new id and the outputs.
	Create(ctx context.Context, c *Call) (string, resource.PropertyMap, error)
	// Update returns the new outputs; changed lists the inputs whose value changed.
	Update(ctx context.Context, c *Call, changed []string) (resource.PropertyMap, error)
	Delete(ctx context.Context, c *Call) error
}

// Configurer is implemented by doubles with provider configuration (libvirt's uri).
type Configurer interface {
	Configure(ctx context.Context, config map[string]any) error
}

// Server is the gRPC resource provider of one double.
type Server struct {
	pulumirpc.UnimplementedResourceProviderServer
	name, version string
	host          *provider.HostClient
	handler       Handler
	types         map[string]bool
	cancelOnce    sync.Once
	cancel        context.CancelFunc
	ctx           context.Context
}

// A plugin installed with `pulumi plugin install resource NAME VER --file BIN` lands in
// <plugins>/resource-NAME-vVER/pulumi-resource-NAME.
var installedDir = regexp.MustCompile(`^resource-(.+)-v(\d+\.\d+\.\d+.*)$`)

// version of the plugin: taken from the directory `pulumi plugin install` put it in, so that the
// engine sees the version the program's SDK asks for (pulumi-libvirt 0.5.4 and so on).
func installedVersion() string {
	exe, err := os.Executable()
	if err != nil {
		return "0.0.0"
	}
	if m := installedDir.FindStringSubmatch(filepath.Base(filepath.Dir(exe))); m != nil {
		return m[2]
	}
	return "0.0.0"
}

// Main serves handler as the provider `name` until the engine stops it.
func Main(name string, handler Handler) {
	err := provider.Main(name, func(host *provider.HostClient) (pulumirpc.ResourceProviderServer, error) {
		ctx, cancel := context.WithCancel(context.Background())
		s := &Server{name: name, version: installedVersion(), host: host, handler: handler,
			types: map[string]bool{}, ctx: ctx, cancel: cancel}
		for _, t := range handler.Types() {
			s.types[t] = true
		}
		return s, nil
	})
	if err != nil {
		cmdutil.ExitError(err.Error())
	}
}

func (s *Server) Handshake(
	context.Context, *pulumirpc.ProviderHandshakeRequest,
) (*pulumirpc.ProviderHandshakeResponse, error) {
	return &pulumirpc.ProviderHandshakeResponse{AcceptSecrets: true}, nil
}

func (s *Server) GetPluginInfo(context.Context, *emptypb.Empty) (*pulumirpc.PluginInfo, error) {
	return &pulumirpc.PluginInfo{Version: s.version}, nil
}

func (s *Server) GetSchema(context.Context, *pulumirpc.GetSchemaRequest) (*pulumirpc.GetSchemaResponse, error) {
	return &pulumirpc.GetSchemaResponse{Schema: fmt.Sprintf(`{"name":%q,"version":%q}`, s.name, s.version)}, nil
}

func (s *Server) CheckConfig(_ context.Context, req *pulumirpc.CheckRequest) (*pulumirpc.CheckResponse, error) {
	return &pulumirpc.CheckResponse{Inputs: req.GetNews()}, nil
}

// DiffConfig: a changed provider configuration (another libvirt URI) would move every resource to
// another host; what the real provider does then is not reproduced, so it fails loudly.
func (s *Server) DiffConfig(_ context.Context, req *pulumirpc.DiffRequest) (*pulumirpc.DiffResponse, error) {
	olds, err := plainOf(req.GetOldInputs())
	if err != nil {
		return nil, err
	}
	news, err := plainOf(req.GetNews())
	if err != nil {
		return nil, err
	}
	var changed []string
	for _, k := range keysOf(olds, news) {
		if strings.HasPrefix(k, "__") || k == "version" {
			continue
		}
		if !reflect.DeepEqual(olds[k], news[k]) {
			changed = append(changed, k)
		}
	}
	if len(olds) > 0 && len(changed) > 0 {
		return nil, fmt.Errorf("the %s double cannot reproduce a change of the provider configuration (%s)",
			s.name, strings.Join(changed, ", "))
	}
	return &pulumirpc.DiffResponse{Changes: pulumirpc.DiffResponse_DIFF_NONE}, nil
}

func (s *Server) Configure(ctx context.Context, req *pulumirpc.ConfigureRequest) (*pulumirpc.ConfigureResponse, error) {
	if c, ok := s.handler.(Configurer); ok {
		config, err := plainOf(req.GetArgs())
		if err != nil {
			return nil, err
		}
		if err := c.Configure(ctx, config); err != nil {
			return nil, err
		}
	}
	return &pulumirpc.ConfigureResponse{AcceptSecrets: true, SupportsPreview: true}, nil
}

func (s *Server) token(typ, urn string) (string, error) {
	if typ == "" {
		typ = string(resource.URN(urn).Type())
	}
	if !s.types[typ] {
		return "", fmt.Errorf("the %s double does not implement %s", s.name, typ)
	}
	return typ, nil
}

func (s *Server) Check(_ context.Context, req *pulumirpc.CheckRequest) (*pulumirpc.CheckResponse, error) {
	typ, err := s.token(req.GetType(), req.GetUrn())
	if err != nil {
		return nil, err
	}
	plain, err := plainOf(req.GetNews())
	if err != nil {
		return nil, err
	}
	if err := s.handler.Check(typ, plain); err != nil {
		return &pulumirpc.CheckResponse{Inputs: req.GetNews(), Failures: []*pulumirpc.CheckFailure{
			{Reason: fmt.Sprintf("%s (%s double)", err, s.name)},
		}}, nil
	}
	return &pulumirpc.CheckResponse{Inputs: req.GetNews()}, nil
}

// Diff answers with the facts of components/provider_facts.json for this type.
func (s *Server) Diff(_ context.Context, req *pulumirpc.DiffRequest) (*pulumirpc.DiffResponse, error) {
	typ, err := s.token(req.GetType(), req.GetUrn())
	if err != nil {
		return nil, err
	}
	olds := req.GetOldInputs()
	if olds == nil {
		olds = req.GetOlds()
	}
	oldPlain, err := plainOf(olds)
	if err != nil {
		return nil, err
	}
	newPlain, err := plainOf(req.GetNews())
	if err != nil {
		return nil, err
	}
	return DiffInputs(typ, oldPlain, newPlain)
}

// DiffInputs compares plain old and new inputs of a resource of type typ.
func DiffInputs(typ string, olds, news map[string]any) (*pulumirpc.DiffResponse, error) {
	f, err := facts.For(typ)
	if err != nil {
		return nil, err
	}
	var changed, replaces []string
	detailed := map[string]*pulumirpc.PropertyDiff{}
	for _, k := range keysOf(olds, news) {
		o, okOld := olds[k]
		n, okNew := news[k]
		if okOld && okNew && !facts.ContainsUnknown(n) && reflect.DeepEqual(o, n) {
			continue
		}
		if !okOld && !okNew {
			continue
		}
		changed = append(changed, k)
		replace := f.ReplacedBy(k, o, n)
		kind := pulumirpc.PropertyDiff_UPDATE
		switch {
		case !okOld && replace:
			kind = pulumirpc.PropertyDiff_ADD_REPLACE
		case !okOld:
			kind = pulumirpc.PropertyDiff_ADD
		case !okNew && replace:
			kind = pulumirpc.PropertyDiff_DELETE_REPLACE
		case !okNew:
			kind = pulumirpc.PropertyDiff_DELETE
		case replace:
			kind = pulumirpc.PropertyDiff_UPDATE_REPLACE
		}
		if replace {
			replaces = append(replaces, k)
		}
		detailed[k] = &pulumirpc.PropertyDiff{Kind: kind, InputDiff: true}
	}
	if len(changed) == 0 {
		return &pulumirpc.DiffResponse{Changes: pulumirpc.DiffResponse_DIFF_NONE, HasDetailedDiff: true}, nil
	}
	return &pulumirpc.DiffResponse{
		Changes: pulumirpc.DiffResponse_DIFF_SOME, Diffs: changed, Replaces: replaces,
		DetailedDiff: detailed, HasDetailedDiff: true,
	}, nil
}

func (s *Server) call(urn, typ, id string, preview bool, news, olds *structpb.Struct) (*Call, error) {
	c := &Call{URN: urn, Type: typ, ID: id, Preview: preview}
	var err error
	if news != nil {
		if c.Inputs, err = unmarshal(news); err != nil {
			return nil, err
		}
		c.Plain = Plain(c.Inputs)
	}
	if olds != nil {
		if c.Olds, err = unmarshal(olds); err != nil {
			return nil, err
		}
		c.OldPlain = Plain(c.Olds)
	}
	c.log = func(ctx context.Context, sev diag.Severity, msg string, ephemeral bool) {
		if ephemeral {
			_ = s.host.LogStatus(ctx, sev, resource.URN(urn), msg)
		} else {
			_ = s.host.Log(ctx, sev, resource.URN(urn), msg)
		}
	}
	return c, nil
}

// ctxFor ends with the request or when the engine cancels every operation (Cancel).
func (s *Server) ctxFor(ctx context.Context) (context.Context, context.CancelFunc) {
	merged, cancel := context.WithCancel(ctx)
	go func() {
		select {
		case <-s.ctx.Done():
			cancel()
		case <-merged.Done():
		}
	}()
	return merged, cancel
}

func (s *Server) Create(ctx context.Context, req *pulumirpc.CreateRequest) (*pulumirpc.CreateResponse, error) {
	typ, err := s.token(req.GetType(), req.GetUrn())
	if err != nil {
		return nil, err
	}
	c, err := s.call(req.GetUrn(), typ, "", req.GetPreview(), req.GetProperties(), nil)
	if err != nil {
		return nil, err
	}
	ctx, cancel := s.ctxFor(ctx)
	defer cancel()
	id, outs, err := s.handler.Create(ctx, c)
	if err != nil {
		return nil, err
	}
	props, err := marshal(outs)
	if err != nil {
		return nil, err
	}
	return &pulumirpc.CreateResponse{Id: id, Properties: props}, nil
}

func (s *Server) Update(ctx context.Context, req *pulumirpc.UpdateRequest) (*pulumirpc.UpdateResponse, error) {
	typ, err := s.token(req.GetType(), req.GetUrn())
	if err != nil {
		return nil, err
	}
	c, err := s.call(req.GetUrn(), typ, req.GetId(), req.GetPreview(), req.GetNews(), req.GetOlds())
	if err != nil {
		return nil, err
	}
	oldInputs := c.OldPlain
	if req.GetOldInputs() != nil {
		if oldInputs, err = plainOf(req.GetOldInputs()); err != nil {
			return nil, err
		}
	}
	var changed []string
	for _, k := range keysOf(oldInputs, c.Plain) {
		if !reflect.DeepEqual(oldInputs[k], c.Plain[k]) {
			changed = append(changed, k)
		}
	}
	ctx, cancel := s.ctxFor(ctx)
	defer cancel()
	outs, err := s.handler.Update(ctx, c, changed)
	if err != nil {
		return nil, err
	}
	props, err := marshal(outs)
	if err != nil {
		return nil, err
	}
	return &pulumirpc.UpdateResponse{Properties: props}, nil
}

func (s *Server) Delete(ctx context.Context, req *pulumirpc.DeleteRequest) (*emptypb.Empty, error) {
	typ, err := s.token(req.GetType(), req.GetUrn())
	if err != nil {
		return nil, err
	}
	c, err := s.call(req.GetUrn(), typ, req.GetId(), false, nil, req.GetProperties())
	if err != nil {
		return nil, err
	}
	ctx, cancel := s.ctxFor(ctx)
	defer cancel()
	return &emptypb.Empty{}, s.handler.Delete(ctx, c)
}

// Read backs `pulumi refresh` and imports; the doubles do not reproduce them.
func (s *Server) Read(_ context.Context, req *pulumirpc.ReadRequest) (*pulumirpc.ReadResponse, error) {
	return nil, status.Errorf(codes.Unimplemented,
		"the %s double does not reproduce Read (refresh, import) of %s", s.name, req.GetUrn())
}

func (s *Server) Cancel(context.Context, *emptypb.Empty) (*emptypb.Empty, error) {
	s.cancelOnce.Do(s.cancel)
	return &emptypb.Empty{}, nil
}

func (s *Server) Invoke(_ context.Context, req *pulumirpc.InvokeRequest) (*pulumirpc.InvokeResponse, error) {
	return nil, status.Errorf(codes.Unimplemented, "the %s double implements no invoke (%s)", s.name, req.GetTok())
}

// --- properties --------------------------------------------------------------------------------

func unmarshal(s *structpb.Struct) (resource.PropertyMap, error) {
	return plugin.UnmarshalProperties(s, plugin.MarshalOptions{KeepUnknowns: true, KeepSecrets: true, SkipNulls: true})
}

func marshal(m resource.PropertyMap) (*structpb.Struct, error) {
	return plugin.MarshalProperties(m, plugin.MarshalOptions{KeepUnknowns: true, KeepSecrets: true})
}

func plainOf(s *structpb.Struct) (map[string]any, error) {
	if s == nil {
		return map[string]any{}, nil
	}
	m, err := unmarshal(s)
	if err != nil {
		return nil, err
	}
	return Plain(m), nil
}

// Plain turns a property map into plain Go values: secrets unwrapped, unknowns as facts.Unknown,
// numbers float64, objects map[string]any, arrays []any.
func Plain(m resource.PropertyMap) map[string]any {
	out := map[string]any{}
	for k, v := range m {
		if v.IsNull() {
			continue
		}
		out[string(k)] = plainValue(v)
	}
	return out
}

func plainValue(v resource.PropertyValue) any {
	switch {
	case v.IsNull():
		return nil
	case v.IsBool():
		return v.BoolValue()
	case v.IsNumber():
		return v.NumberValue()
	case v.IsString():
		return v.StringValue()
	case v.IsArray():
		arr := v.ArrayValue()
		out := make([]any, len(arr))
		for i, e := range arr {
			out[i] = plainValue(e)
		}
		return out
	case v.IsObject():
		return Plain(v.ObjectValue())
	case v.IsSecret():
		return plainValue(v.SecretValue().Element)
	case v.IsComputed():
		return facts.Unknown{}
	case v.IsOutput():
		o := v.OutputValue()
		if !o.Known {
			return facts.Unknown{}
		}
		return plainValue(o.Element)
	case v.IsResourceReference():
		return string(v.ResourceReferenceValue().URN)
	default:
		return fmt.Sprintf("<unsupported %s>", v.TypeString())
	}
}

func keysOf(maps ...map[string]any) []string {
	seen := map[string]bool{}
	var keys []string
	for _, m := range maps {
		for k := range m {
			if !seen[k] {
				seen[k] = true
				keys = append(keys, k)
			}
		}
	}
	sort.Strings(keys)
	return keys
}

// --- helpers for handlers ----------------------------------------------------------------------

// Str, Num, Bool, Obj and List read a plain input, with a zero value when it is absent.
func Str(m map[string]any, k string) string {
	s, _ := m[k].(string)
	return s
}

func Num(m map[string]any, k string) (float64, bool) {
	n, ok := m[k].(float64)
	return n, ok
}

func Bool(m map[string]any, k string, def bool) bool {
	if b, ok := m[k].(bool); ok {
		return b
	}
	return def
}

func Obj(m map[string]any, k string) map[string]any {
	o, _ := m[k].(map[string]any)
	return o
}

func List(m map[string]any, k string) []any {
	l, _ := m[k].([]any)
	return l
}

// Known fails when an input the double needs is still unknown (outside a preview this is an engine bug).
func Known(m map[string]any, keys ...string) error {
	for _, k := range keys {
		if facts.ContainsUnknown(m[k]) {
			return fmt.Errorf("input %s is not known yet", k)
		}
	}
	return nil
}

// Unexpected lists the keys of m that are not in allowed: inputs the double does not reproduce.
func Unexpected(m map[string]any, allowed ...string) error {
	ok := map[string]bool{}
	for _, a := range allowed {
		ok[a] = true
	}
	var extra []string
	for k := range m {
		if !ok[k] && !strings.HasPrefix(k, "__") {
			extra = append(extra, k)
		}
	}
	if len(extra) == 0 {
		return nil
	}
	sort.Strings(extra)
	return fmt.Errorf("inputs the double does not reproduce: %s", strings.Join(extra, ", "))
}

// WithOutputs copies inputs and sets the given outputs; in a preview, pass unknown outputs with Unknown.
func WithOutputs(inputs resource.PropertyMap, outs map[string]resource.PropertyValue) resource.PropertyMap {
	m := inputs.Copy()
	for k, v := range outs {
		m[resource.PropertyKey(k)] = v
	}
	return m
}

// Unknown is an output a preview cannot know yet.
func Unknown() resource.PropertyValue { return resource.MakeComputed(resource.NewProperty("")) }

// ErrPreview marks work a preview must not do.
var ErrPreview = errors.New("not during a preview")
