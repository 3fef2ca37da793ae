package data

import (
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// errShape stands in the table for a *json.UnmarshalTypeError.
var errShape = errors.New("a *json.UnmarshalTypeError")

// isErr is errors.Is, with errShape matching any *json.UnmarshalTypeError.
func isErr(err, want error) bool {
	var typeErr *json.UnmarshalTypeError
	return errors.Is(err, want) || (want == errShape && errors.As(err, &typeErr))
}

func TestTagClasses(t *testing.T) {
	recs := []string{
		`{"id":"1","image":"a.png","tags":{"color":"red","object":"sign"}}`,
		`{"id":"2","image":"b.png","tags":{"color":"blue"}}`,
		`{"id":"3","tags":{"color":"green"}}`, // text only: not a class
		`{"id":"4","image":"c.png","tags":{"color":"red"}}`,
	}
	want := map[string][]string{"color": {"blue", "red"}, "object": {"sign"}}
	tests := []struct {
		name, text string
		err        error // nil: want
	}{
		{"array", "[" + strings.Join(recs, ",") + "]", nil},
		{"lines", strings.Join(recs, "\n"), nil},
		{"wrong shape", `[{"id":"1","image":"a.png","tags":["red"]}]`, errShape},
		{"too large", fmt.Sprintf(`[{"id":"1","image":"a.png","tags":{"color":"%s"}}]`, strings.Repeat("r", DefaultMaxRecordBytes)), ErrRecordTooLarge},
		{"not JSON", `[{"id":`, ErrMalformedJSON},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "tags.json")
			writeFile(t, path, []byte(tt.text))
			got, err := TagClasses(path)
			if tt.err != nil {
				if !isErr(err, tt.err) {
					t.Errorf("got %v, %v; want %v", got, err, tt.err)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, want) {
				t.Errorf("got %v, %v; want %v", got, err, want)
			}
		})
	}
}
