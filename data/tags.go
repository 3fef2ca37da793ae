package data

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"

	"github.com/flextrain/flextrain/internal/fileio"
)

// TagClasses reads the tags of the image records of a LLaVA-format JSON file (Record.Tags) and returns, for
// each key, its values in sorted order: the classes of the vision tower's tag pretraining.
func TagClasses(path string) (map[string][]string, error) {
	f, err := fileio.Open(path)
	if err != nil {
		return nil, fmt.Errorf("data: tags: %w", err)
	}
	defer f.Close()
	dec := json.NewDecoder(f)
	if tok, err := dec.Token(); err != nil || tok != json.Delim('[') {
		return nil, fmt.Errorf("data: tags: %s: not a JSON array of records", path)
	}
	seen := map[string]map[string]bool{}
	for i := 0; dec.More(); i++ {
		var r struct {
			Image string            `json:"image"`
			Tags  map[string]string `json:"tags"`
		}
		if err := dec.Decode(&r); err != nil {
			return nil, fmt.Errorf("data: tags: %s: record %d: %w", path, i, err)
		}
		for k, v := range r.Tags {
			if r.Image == "" {
				break
			}
			if seen[k] == nil {
				seen[k] = map[string]bool{}
			}
			seen[k][v] = true
		}
	}
	if _, err := dec.Token(); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("data: tags: %s: %w", path, err)
	}
	out := map[string][]string{}
	for k, vs := range seen {
		for v := range vs {
			out[k] = append(out[k], v)
		}
		slices.Sort(out[k])
	}
	return out, nil
}
