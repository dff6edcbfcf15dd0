// pulumi-resource-random (double): RandomBytes and RandomPassword of pulumi-random 4.21.4, which bridges
// hashicorp/terraform-provider-random. The real plugin cannot be built here (the Go module proxy
// refuses it, docs/testing.md); users get it from Pulumi.
//
// What it follows (terraform-provider-random):
//   - internal/provider/resource_bytes.go@8acd2b17: Create draws `length` bytes from crypto/rand and
//     stores them as `base64` (StdEncoding) and `hex`, both Sensitive (secret in Pulumi state); Read
//     does nothing (the state is the value: stable across runs); Delete does nothing; `length` must be
//     at least 1.
//   - internal/random/string.go (CreateString, used by resource_password.go@c054b476): the character
//     set is upper+lower+numeric+special as enabled (special "!@#$%&*()-_=+[]{}<>:?" unless
//     override_special), min_upper/min_lower/min_numeric/min_special characters are drawn first from
//     their own sets, the rest from the whole set, every draw with crypto/rand, then shuffled; `result`
//     and `bcrypt_hash` (golang.org/x/crypto/bcrypt of the result, default cost) are Sensitive; the id
//     is "none".
//   - Replacement: components/provider_facts.json (RandomBytes on keepers and length, RandomPassword on
//     any input); nothing is ever updated in place, so Update fails loudly.
package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"math/big"

	"golang.org/x/crypto/bcrypt"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"

	"hyperscaler/e2e/doubles/internal/rpc"
)

const (
	bytesType    = "random:index/randomBytes:RandomBytes"
	passwordType = "random:index/randomPassword:RandomPassword"
)

type random struct{}

func (random) Types() []string { return []string{bytesType, passwordType} }

func (random) Check(token string, in map[string]any) error {
	switch token {
	case bytesType:
		if err := rpc.Unexpected(in, "length", "keepers"); err != nil {
			return err
		}
	case passwordType:
		if err := rpc.Unexpected(in, "length", "keepers", "lower", "upper", "numeric", "number", "special",
			"minLower", "minUpper", "minNumeric", "minSpecial", "overrideSpecial"); err != nil {
			return err
		}
		if _, ok := in["number"]; ok {
			return fmt.Errorf("`number` (deprecated alias of numeric) is not reproduced")
		}
	}
	if n, ok := rpc.Num(in, "length"); ok && n < 1 {
		return fmt.Errorf("length must be at least 1, got %v", n)
	}
	return nil
}

func secret(s string) resource.PropertyValue {
	return resource.MakeSecret(resource.NewProperty(s))
}

func (random) Create(_ context.Context, c *rpc.Call) (string, resource.PropertyMap, error) {
	if c.Preview {
		unknown := map[string]resource.PropertyValue{"base64": rpc.Unknown(), "hex": rpc.Unknown()}
		if c.Type == passwordType {
			unknown = map[string]resource.PropertyValue{"result": rpc.Unknown(), "bcryptHash": rpc.Unknown()}
		}
		return "", rpc.WithOutputs(c.Inputs, unknown), nil
	}
	n, ok := rpc.Num(c.Plain, "length")
	if !ok {
		return "", nil, fmt.Errorf("length is required")
	}
	length := int64(n)
	if c.Type == bytesType {
		buf := make([]byte, length)
		if _, err := rand.Read(buf); err != nil {
			return "", nil, err
		}
		return "none", rpc.WithOutputs(c.Inputs, map[string]resource.PropertyValue{
			"base64": secret(base64.StdEncoding.EncodeToString(buf)),
			"hex":    secret(hex.EncodeToString(buf)),
		}), nil
	}
	params := stringParams{
		length:   length,
		upper:    rpc.Bool(c.Plain, "upper", true),
		lower:    rpc.Bool(c.Plain, "lower", true),
		numeric:  rpc.Bool(c.Plain, "numeric", true),
		special:  rpc.Bool(c.Plain, "special", true),
		override: rpc.Str(c.Plain, "overrideSpecial"),
	}
	for key, dest := range map[string]*int64{
		"minUpper": &params.minUpper, "minLower": &params.minLower,
		"minNumeric": &params.minNumeric, "minSpecial": &params.minSpecial,
	} {
		if v, ok := rpc.Num(c.Plain, key); ok {
			*dest = int64(v)
		}
	}
	result, err := createString(params)
	if err != nil {
		return "", nil, err
	}
	hash, err := bcrypt.GenerateFromPassword(result, bcrypt.DefaultCost)
	if err != nil {
		return "", nil, err
	}
	return "none", rpc.WithOutputs(c.Inputs, map[string]resource.PropertyValue{
		"result":     secret(string(result)),
		"bcryptHash": secret(string(hash)),
	}), nil
}

// Update: every input of these resources replaces, or changes nothing the provider stores
// (components/provider_facts.json: applied_in_place is empty), so an Update means the facts and the
// engine disagree.
func (random) Update(_ context.Context, c *rpc.Call, changed []string) (resource.PropertyMap, error) {
	return nil, fmt.Errorf("%s cannot be updated in place (changed: %v): the random double reproduces no update", c.Type, changed)
}

func (random) Delete(context.Context, *rpc.Call) error { return nil }

type stringParams struct {
	length                                     int64
	upper, lower, numeric, special             bool
	minUpper, minLower, minNumeric, minSpecial int64
	override                                   string
}

// createString follows terraform-provider-random internal/random/string.go CreateString (facts above).
func createString(p stringParams) ([]byte, error) {
	const numChars = "0123456789"
	const lowerChars = "abcdefghijklmnopqrstuvwxyz"
	const upperChars = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
	specialChars := "!@#$%&*()-_=+[]{}<>:?"
	if p.override != "" {
		specialChars = p.override
	}
	chars := ""
	if p.upper {
		chars += upperChars
	}
	if p.lower {
		chars += lowerChars
	}
	if p.numeric {
		chars += numChars
	}
	if p.special {
		chars += specialChars
	}
	if chars == "" {
		return nil, fmt.Errorf("every character class is disabled")
	}
	result := make([]byte, 0, p.length)
	for _, group := range []struct {
		set string
		min int64
	}{{numChars, p.minNumeric}, {lowerChars, p.minLower}, {upperChars, p.minUpper}, {specialChars, p.minSpecial}} {
		drawn, err := draw(group.set, group.min)
		if err != nil {
			return nil, err
		}
		result = append(result, drawn...)
	}
	if rest := p.length - int64(len(result)); rest > 0 {
		drawn, err := draw(chars, rest)
		if err != nil {
			return nil, err
		}
		result = append(result, drawn...)
	}
	// Shuffle with crypto/rand (Fisher-Yates), so the minimum characters are not at the front.
	for i := len(result) - 1; i > 0; i-- {
		j, err := rand.Int(rand.Reader, big.NewInt(int64(i+1)))
		if err != nil {
			return nil, err
		}
		result[i], result[j.Int64()] = result[j.Int64()], result[i]
	}
	return result, nil
}

func draw(set string, n int64) ([]byte, error) {
	out := make([]byte, n)
	size := big.NewInt(int64(len(set)))
	for i := range out {
		idx, err := rand.Int(rand.Reader, size)
		if err != nil {
			return nil, err
		}
		out[i] = set[idx.Int64()]
	}
	return out, nil
}

func main() { rpc.Main("random", random{}) }
