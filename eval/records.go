package eval

import (
	"bytes"
	"encoding/json"
	"fmt"

	"github.com/flextrain/flextrain/internal/fileio"
)

// RecordKinds reads the "kind" field of every record of a LLaVA data file (a JSON array or JSON Lines), by
// record id; records without one are left out. Two records with one id but different kinds are an error.
func RecordKinds(path string) (map[string]string, error) {
	recs, err := ReadRecords(path)
	if err != nil {
		return nil, err
	}
	kinds := map[string]string{}
	for i, r := range recs {
		id := r.IDString()
		if k, ok := kinds[id]; ok && k != r.Kind {
			return nil, fmt.Errorf("eval: read kinds %s: record %d: id %s has kind %q and %q", path, i, id, k, r.Kind)
		}
		if r.Kind != "" {
			kinds[id] = r.Kind
		}
	}
	return kinds, nil
}

// ReadRecords reads the fields of every record of the data file path that evaluation and the selection
// diagnostics use beyond the conversation.
func ReadRecords(path string) ([]Record, error) {
	b, err := fileio.ReadFile(path, 0)
	if err != nil {
		return nil, fmt.Errorf("eval: read kinds %s: %w", path, err)
	}
	recs, err := decodeMeta(b)
	if err != nil {
		return nil, fmt.Errorf("eval: read kinds %s: %w", path, err)
	}
	return recs, nil
}

// Record is the part of a data record evaluation reads: its id, the synthetic set's kind and the target's
// bounding box (original pixels, [x0, y0, x1, y1], x1 and y1 exclusive).
type Record struct {
	ID   json.RawMessage `json:"id"`
	Kind string          `json:"kind"`
	Box  []int           `json:"box"`
	// Others are the boxes of the image's other objects (the synthetic boards' distractor signs), for the
	// selection diagnostics.
	Others [][]int `json:"others"`
}

// IDString is the record id as the loader reports it: a string as is, a number as its literal text.
func (r Record) IDString() string {
	var s string
	if json.Unmarshal(r.ID, &s) == nil {
		return s
	}
	return string(r.ID)
}

// decodeMeta reads a JSON array of records or one record per line.
func decodeMeta(b []byte) ([]Record, error) {
	b = bytes.TrimSpace(b)
	var recs []Record
	if len(b) > 0 && b[0] == '[' {
		err := json.Unmarshal(b, &recs)
		return recs, err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	for dec.More() {
		var r Record
		if err := dec.Decode(&r); err != nil {
			return nil, fmt.Errorf("record %d: %w", len(recs), err)
		}
		recs = append(recs, r)
	}
	return recs, nil
}
