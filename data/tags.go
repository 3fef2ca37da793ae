package data

import (
	"cmp"
	"fmt"
	"slices"

	"github.com/flextrain/flextrain/internal/fileio"
)

// TagClasses reads the tags of the image records of a LLaVA-format JSON file (Record.Tags), a JSON array or
// JSON Lines, and returns, for each key, its values in sorted order: the classes of the vision tower's tag
// pretraining. A record of the wrong shape, or longer than DefaultMaxRecordBytes, is an error.
func TagClasses(path string) (map[string][]string, error) {
	ix, err := buildIndex(path, DefaultMaxRecordBytes)
	if err != nil {
		return nil, fmt.Errorf("data: tags: %w", err)
	}
	f, err := fileio.Open(path)
	if err != nil {
		return nil, fmt.Errorf("data: tags: %w", err)
	}
	defer f.Close()
	seen := map[string]map[string]bool{}
	for i := range ix.entries {
		r, bad, err := ix.readRecord(f, i)
		if err = cmp.Or(err, bad); err != nil {
			return nil, fmt.Errorf("data: tags: %s: record %d: %w", path, i, err)
		}
		addTags(seen, r)
	}
	return sortedClasses(seen), nil
}

// addTags adds the tags of an image record to seen, by key.
func addTags(seen map[string]map[string]bool, r Record) {
	if r.Image == "" {
		return
	}
	for k, v := range r.Tags {
		if seen[k] == nil {
			seen[k] = map[string]bool{}
		}
		seen[k][v] = true
	}
}

// sortedClasses lists the values of each key in sorted order.
func sortedClasses(seen map[string]map[string]bool) map[string][]string {
	out := map[string][]string{}
	for k, vs := range seen {
		for v := range vs {
			out[k] = append(out[k], v)
		}
		slices.Sort(out[k])
	}
	return out
}
