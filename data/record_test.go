package data

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// indexString indexes s written to a temp file and reads every record back.
func indexString(t testing.TB, s string) (*index, []Record, error) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "d.json")
	writeFile(t, path, []byte(s))
	ix, err := buildIndex(path, DefaultMaxRecordBytes)
	if err != nil {
		return nil, nil, err
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var recs []Record
	for i := range ix.entries {
		r, _, err := ix.readRecord(f, i)
		if err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
		recs = append(recs, r)
	}
	return ix, recs, nil
}

func TestIndexArrayAndLines(t *testing.T) {
	want := []Record{
		{ID: "a1", Image: "coco/1.jpg", Conversations: conv("<image>\nq", "a")},
		{ID: "42", Conversations: conv("text only", "yes")},
		{ID: "c", Image: "x.png", Conversations: []Turn{{From: "human", Value: "é ü \" ,]["}}},
	}
	inputs := map[string]string{
		"array": `[{"id":"a1","image":"coco/1.jpg","conversations":[{"from":"human","value":"<image>\nq"},{"from":"gpt","value":"a"}]} ,
  {"id": 42, "model": "", "conversations":[{"from":"human","value":"text only"},{"from":"gpt","value":"yes"}]},
	{"id":"c","image":"x.png","conversations":[{"from":"human","value":"é ü \" ,]["}]}]`,
		"lines": ` {"id":"a1","image":"coco/1.jpg","conversations":[{"from":"human","value":"<image>\nq"},{"from":"gpt","value":"a"}]}
{"id": 42, "model": "", "conversations":[{"from":"human","value":"text only"},{"from":"gpt","value":"yes"}]}

{"id":"c","image":"x.png","conversations":[{"from":"human","value":"é ü \" ,]["}]}
`,
	}
	for name, in := range inputs {
		t.Run(name, func(t *testing.T) {
			ix, got, err := indexString(t, in)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("got %+v; want %+v", got, want)
			}
			// LLaVA's modality lengths: words of all turns, +128 with an image.
			if lens := []int32{ix.entries[0].words, ix.entries[1].words, ix.entries[2].words}; !reflect.DeepEqual(lens, []int32{128 + 3, 3, 128 + 4}) {
				t.Errorf("modality lengths: got %v; want [131 3 132]", lens)
			}
		})
	}
}

func TestIndexMalformed(t *testing.T) {
	tests := []struct {
		name, in string
		offset   string // "at byte N": N counted by hand, the start of the value that fails
	}{
		{"empty", "", "empty file"},
		{"not json", "hello", "at byte 0"},
		{"missing comma", `[{"id":"a"} {"id":"b"}]`, "at byte 12"},
		{"truncated array", `[{"id":"a"},{"id":"b"`, "at byte 12"},
		{"unclosed array", `[{"id":"a"}`, "at byte 11"},
		{"garbage after", `[{"id":"a"}] x`, "at byte 13"},
		{"bad value", `[{"id":"a"},{"id":tru}]`, "at byte 12"},
		{"bad line", "{\"id\":\"a\"}\n{\"id\":}\n", "at byte 11"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := indexString(t, tt.in)
			if !errors.Is(err, ErrMalformedJSON) || !strings.Contains(err.Error(), tt.offset) {
				t.Errorf("got %v; want ErrMalformedJSON %s", err, tt.offset)
			}
		})
	}
}

func TestIndexWrongShapeIsABadRecord(t *testing.T) {
	in := `[{"id":"a","conversations":"oops"},{"id":true,"conversations":[]},{"id":"c","image":["x"]},{"id":"d","conversations":[{"from":"human","value":"hi"}]}]`
	ix, _, err := indexString(t, in)
	if err != nil {
		t.Fatal(err)
	}
	var got []bool
	for _, e := range ix.entries {
		got = append(got, e.malformed)
	}
	if want := []bool{true, true, true, false}; !reflect.DeepEqual(got, want) {
		t.Errorf("malformed flags: got %v; want %v", got, want)
	}
}

// FuzzIndex feeds arbitrary bytes to the reader: it must return records or an error, never panic, and
// every indexed record must read back.
func FuzzIndex(f *testing.F) {
	f.Add([]byte(`[{"id":"a","image":"x.jpg","conversations":[{"from":"human","value":"<image>\nq"},{"from":"gpt","value":"a"}]}]`))
	f.Add([]byte("{\"id\":1}\n{\"id\":\"b\",\"conversations\":[]}\n"))
	f.Add([]byte(`[{"id":"a"},{"id":`))
	f.Add([]byte(`[]`))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, b []byte) {
		path := filepath.Join(dir, "fuzz.json")
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
		ix, err := buildIndex(path, DefaultMaxRecordBytes)
		if err != nil {
			if !errors.Is(err, ErrMalformedJSON) {
				t.Fatalf("error not ErrMalformedJSON: %v", err)
			}
			return
		}
		file, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer file.Close()
		for i := range ix.entries {
			if _, _, err := ix.readRecord(file, i); err != nil {
				t.Fatalf("record %d indexed but unreadable: %v", i, err)
			}
		}
	})
}
