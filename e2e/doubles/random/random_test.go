package main

import (
	"strings"
	"testing"
)

func TestPasswordsFollowTheCharacterClassesAndMinimums(t *testing.T) {
	seen := map[string]bool{}
	for i := 0; i < 50; i++ {
		p, err := createString(stringParams{length: 32, upper: true, lower: true, numeric: true, special: false,
			minNumeric: 5, minUpper: 2})
		if err != nil {
			t.Fatal(err)
		}
		s := string(p)
		if len(s) != 32 || strings.ContainsAny(s, "!@#$%&*()-_=+[]{}<>:?") {
			t.Fatalf("bad password %q", s)
		}
		digits, upper := 0, 0
		for _, c := range s {
			switch {
			case c >= '0' && c <= '9':
				digits++
			case c >= 'A' && c <= 'Z':
				upper++
			}
		}
		if digits < 5 || upper < 2 {
			t.Fatalf("%q has %d digits and %d upper-case letters", s, digits, upper)
		}
		seen[s] = true
	}
	if len(seen) != 50 {
		t.Fatal("passwords repeat")
	}
	if _, err := createString(stringParams{length: 8}); err == nil {
		t.Fatal("no character class enabled must fail")
	}
}
