// pulumi-resource-stub: a stand-in resource provider for hyperscaler's engine smoke test.
//
// The real providers (pulumi-libvirt 0.5.4, pulumi-command 1.2.1, pulumi-random 4.21.4) cannot
// be built here: the Go module proxy this project reaches refuses their provider modules and
// several of their dependencies (HTTP 403). This binary lets the real CLI, the real deployment
// engine, the state backend and secret encryption run the whole program offline. It is installed
// once per provider name (`pulumi plugin install resource libvirt 0.5.4 --file ...`) and takes its
// name and version from the plugin directory it was installed into.
//
// It has no schema and manages nothing: Check accepts any inputs, Diff compares top-level inputs
// (every change is an in-place update, never a replace), Create in a preview leaves every output
// unknown, and a real Create, Update, Read and Delete only echo inputs as outputs. Anything a real
// provider decides (defaults, replaces, validation) is not exercised. Never point it at a stack
// whose state matters.
package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/pulumi/pulumi/sdk/v3/go/common/util/cmdutil"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi/provider"
	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
)

// A plugin installed with `pulumi plugin install resource NAME VER --file BIN` lands in
// <plugins>/resource-NAME-vVER/pulumi-resource-NAME.
var installedDir = regexp.MustCompile(`^resource-(.+)-v(\d+\.\d+\.\d+.*)$`)

func identity() (string, string) {
	exe, err := os.Executable()
	if err != nil {
		return "stub", "0.0.0"
	}
	name := strings.TrimPrefix(filepath.Base(exe), "pulumi-resource-")
	if m := installedDir.FindStringSubmatch(filepath.Base(filepath.Dir(exe))); m != nil {
		return m[1], m[2]
	}
	return name, "0.0.0"
}

func main() {
	name, version := identity()
	err := provider.Main(name, func(*provider.HostClient) (pulumirpc.ResourceProviderServer, error) {
		return &stub{name: name, version: version}, nil
	})
	if err != nil {
		cmdutil.ExitError(err.Error())
	}
}

type stub struct {
	pulumirpc.UnimplementedResourceProviderServer
	name    string
	version string
}

func (s *stub) Handshake(
	context.Context, *pulumirpc.ProviderHandshakeRequest,
) (*pulumirpc.ProviderHandshakeResponse, error) {
	return &pulumirpc.ProviderHandshakeResponse{AcceptSecrets: true, AcceptResources: true, AcceptOutputs: true}, nil
}

func (s *stub) GetPluginInfo(context.Context, *emptypb.Empty) (*pulumirpc.PluginInfo, error) {
	return &pulumirpc.PluginInfo{Version: s.version}, nil
}

func (s *stub) GetSchema(context.Context, *pulumirpc.GetSchemaRequest) (*pulumirpc.GetSchemaResponse, error) {
	return &pulumirpc.GetSchemaResponse{Schema: fmt.Sprintf(`{"name":%q,"version":%q}`, s.name, s.version)}, nil
}

func (s *stub) CheckConfig(_ context.Context, req *pulumirpc.CheckRequest) (*pulumirpc.CheckResponse, error) {
	return &pulumirpc.CheckResponse{Inputs: req.GetNews()}, nil
}

func (s *stub) DiffConfig(_ context.Context, req *pulumirpc.DiffRequest) (*pulumirpc.DiffResponse, error) {
	return diff(req.GetOldInputs(), req.GetNews()), nil
}

func (s *stub) Configure(context.Context, *pulumirpc.ConfigureRequest) (*pulumirpc.ConfigureResponse, error) {
	return &pulumirpc.ConfigureResponse{
		AcceptSecrets: true, SupportsPreview: true, AcceptResources: true, AcceptOutputs: true,
	}, nil
}

func (s *stub) Check(_ context.Context, req *pulumirpc.CheckRequest) (*pulumirpc.CheckResponse, error) {
	return &pulumirpc.CheckResponse{Inputs: req.GetNews()}, nil
}

func (s *stub) Diff(_ context.Context, req *pulumirpc.DiffRequest) (*pulumirpc.DiffResponse, error) {
	olds := req.GetOldInputs()
	if olds == nil {
		olds = req.GetOlds()
	}
	return diff(olds, req.GetNews()), nil
}

func (s *stub) Create(_ context.Context, req *pulumirpc.CreateRequest) (*pulumirpc.CreateResponse, error) {
	if req.GetPreview() {
		// Leave every output unknown, as a real provider does for computed values.
		return &pulumirpc.CreateResponse{}, nil
	}
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, err
	}
	props, err := withComputed(req.GetType(), req.GetProperties())
	if err != nil {
		return nil, err
	}
	return &pulumirpc.CreateResponse{Id: "stub-" + hex.EncodeToString(b[:]), Properties: props}, nil
}

// withComputed adds the few computed outputs hyperscaler's program reads, so that a stub `up`
// gets as far as a real one would: random bytes and passwords, and a remote command's output.
func withComputed(typ string, inputs *structpb.Struct) (*structpb.Struct, error) {
	props := proto.Clone(inputs).(*structpb.Struct)
	if props == nil {
		props = &structpb.Struct{}
	}
	if props.Fields == nil {
		props.Fields = map[string]*structpb.Value{}
	}
	length := int(props.GetFields()["length"].GetNumberValue())
	switch typ {
	case "random:index/randomBytes:RandomBytes":
		buf := make([]byte, length)
		if _, err := rand.Read(buf); err != nil {
			return nil, err
		}
		props.Fields["base64"] = structpb.NewStringValue(base64.StdEncoding.EncodeToString(buf))
		props.Fields["hex"] = structpb.NewStringValue(hex.EncodeToString(buf))
	case "random:index/randomPassword:RandomPassword":
		buf := make([]byte, (length+1)/2)
		if _, err := rand.Read(buf); err != nil {
			return nil, err
		}
		props.Fields["result"] = structpb.NewStringValue(hex.EncodeToString(buf)[:length])
	case "command:remote:Command", "command:local:Command":
		props.Fields["stdout"] = structpb.NewStringValue("")
		props.Fields["stderr"] = structpb.NewStringValue("")
	}
	return props, nil
}

func (s *stub) Read(_ context.Context, req *pulumirpc.ReadRequest) (*pulumirpc.ReadResponse, error) {
	return &pulumirpc.ReadResponse{Id: req.GetId(), Properties: req.GetProperties(), Inputs: req.GetInputs()}, nil
}

func (s *stub) Update(_ context.Context, req *pulumirpc.UpdateRequest) (*pulumirpc.UpdateResponse, error) {
	return &pulumirpc.UpdateResponse{Properties: req.GetNews()}, nil
}

func (s *stub) Delete(context.Context, *pulumirpc.DeleteRequest) (*emptypb.Empty, error) {
	return &emptypb.Empty{}, nil
}

func (s *stub) Cancel(context.Context, *emptypb.Empty) (*emptypb.Empty, error) {
	return &emptypb.Empty{}, nil
}

func (s *stub) Invoke(_ context.Context, req *pulumirpc.InvokeRequest) (*pulumirpc.InvokeResponse, error) {
	return nil, status.Errorf(codes.Unimplemented, "stub provider %s cannot invoke %s", s.name, req.GetTok())
}

// diff reports every top-level input whose value changed as an in-place update.
func diff(olds, news *structpb.Struct) *pulumirpc.DiffResponse {
	keys := map[string]struct{}{}
	for k := range olds.GetFields() {
		keys[k] = struct{}{}
	}
	for k := range news.GetFields() {
		keys[k] = struct{}{}
	}
	var changed []string
	detailed := map[string]*pulumirpc.PropertyDiff{}
	for k := range keys {
		o, okOld := olds.GetFields()[k]
		n, okNew := news.GetFields()[k]
		if okOld && okNew && proto.Equal(o, n) {
			continue
		}
		changed = append(changed, k)
		kind := pulumirpc.PropertyDiff_UPDATE
		switch {
		case !okOld:
			kind = pulumirpc.PropertyDiff_ADD
		case !okNew:
			kind = pulumirpc.PropertyDiff_DELETE
		}
		detailed[k] = &pulumirpc.PropertyDiff{Kind: kind, InputDiff: true}
	}
	sort.Strings(changed)
	if len(changed) == 0 {
		return &pulumirpc.DiffResponse{Changes: pulumirpc.DiffResponse_DIFF_NONE, HasDetailedDiff: true}
	}
	return &pulumirpc.DiffResponse{
		Changes: pulumirpc.DiffResponse_DIFF_SOME, Diffs: changed, DetailedDiff: detailed, HasDetailedDiff: true,
	}
}
