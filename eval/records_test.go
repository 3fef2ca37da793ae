package eval

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRecordKinds(t *testing.T) {
	tests := []struct {
		name, content string
		want          map[string]string
		err           string // in the error; "" for none
	}{
		{"array", `[{"id":"a","kind":"small"},{"id":"b","kind":"large"},{"id":"c"}]`, map[string]string{"a": "small", "b": "large"}, ""},
		{"lines", "{\"id\":\"a\",\"kind\":\"text\"}\n{\"id\":7,\"kind\":\"small\"}\n", map[string]string{"a": "text", "7": "small"}, ""},
		{"repeated id, same kind", `[{"id":"a","kind":"small"},{"id":"a","kind":"small"}]`, map[string]string{"a": "small"}, ""},
		{"repeated id, other kind", `[{"id":"a","kind":"small"},{"id":"a","kind":"large"}]`, nil, `id a has kind "small" and "large"`},
		{"malformed array", `[{"id":"a",}]`, nil, "invalid character"},
		{"malformed line", "{\"id\":\"a\"}\n{\"id\":\n", nil, "record 1"},
	}
	for _, tt := range tests {
		path := filepath.Join(t.TempDir(), "data.json")
		if err := os.WriteFile(path, []byte(tt.content), 0o644); err != nil {
			t.Fatal(err)
		}
		got, err := RecordKinds(path)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) || !strings.Contains(err.Error(), path) {
				t.Errorf("%s: err = %v; want an error naming %s and containing %q", tt.name, err, path, tt.err)
			}
			continue
		}
		if err != nil || len(got) != len(tt.want) {
			t.Errorf("%s: RecordKinds = %v, %v; want %v", tt.name, got, err, tt.want)
			continue
		}
		for id, k := range tt.want {
			if got[id] != k {
				t.Errorf("%s: kind of %s = %q; want %q", tt.name, id, got[id], k)
			}
		}
	}
	if _, err := RecordKinds(filepath.Join(t.TempDir(), "missing.json")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: err = %v; want os.ErrNotExist", err)
	}
}
