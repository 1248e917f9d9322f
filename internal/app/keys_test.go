package app

import (
	"bytes"
	"errors"
	"os"
	"strings"
	"testing"
)

// TestLoadKey: a key from NAME or NAME_FILE (made on first use, refused when others may read it), and a clear
// error for every other case.
func TestLoadKey(t *testing.T) {
	file := t.TempDir() + "/k"
	env := func(kv map[string]string) func(string) string { return func(k string) string { return kv[k] } }
	key, err := LoadKey(env(map[string]string{"K_FILE": file}), "K", 32)
	if err != nil || len(key) != 32 {
		t.Fatalf("first load from a file: got %d bytes, %v; want a new 32-byte key", len(key), err)
	}
	again, err := LoadKey(env(map[string]string{"K_FILE": file}), "K", 32)
	if err != nil || !bytes.Equal(again, key) {
		t.Fatalf("second load: got %v; want the same key", err)
	}
	b, _ := os.ReadFile(file)
	value := strings.TrimSpace(string(b))
	if got, err := LoadKey(env(map[string]string{"K": value}), "K", 32); err != nil || !bytes.Equal(got, key) {
		t.Fatalf("the same key from K: got %v; want it", err)
	}
	tests := []struct {
		name string
		env  map[string]string
		want string
	}{
		{"none", map[string]string{}, "set K_FILE"},
		{"both", map[string]string{"K": value, "K_FILE": file}, "not both"},
		{"not base64", map[string]string{"K": "***"}, "base64 encoding of 32"},
		{"too short", map[string]string{"K": "c2hvcnQ="}, "base64 encoding of 32"},
	}
	for _, tc := range tests {
		if _, err := LoadKey(env(tc.env), "K", 32); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v; want an error with %q", tc.name, err, tc.want)
		}
	}
	if _, err := LoadKey(env(nil), "K", 32); !errors.Is(err, ErrNoKey) {
		t.Errorf("none: got %v; want ErrNoKey", err)
	}
	if err := os.Chmod(file, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadKey(env(map[string]string{"K_FILE": file}), "K", 32); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("a file others may read: got %v; want a refusal", err)
	}
}
