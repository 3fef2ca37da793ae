package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/flextrain/flextrain/data"
	"github.com/flextrain/flextrain/data/synth"
	"github.com/flextrain/flextrain/internal/llava"
)

// checked is the --json output of `data check`.
type checked struct {
	DataPath string `json:"data_path"`
	data.Counts
}

func dataCheckJSON(t *testing.T, args ...string) (checked, error) {
	t.Helper()
	var out bytes.Buffer
	err := dataMain(append([]string{"check", "--json"}, args...), &out)
	var got checked
	if jerr := json.Unmarshal(out.Bytes(), &got); jerr != nil && err == nil {
		t.Fatalf("data check --json printed %q: %v", out.String(), jerr)
	}
	return got, err
}

// testDataCheck: the counts are the generator's; a record whose image is missing is counted and skipped,
// and stops the check when the skip budget or the fail policy forbids it.
func testDataCheck(t *testing.T, r run) {
	got, err := dataCheckJSON(t, "--config", r.config)
	if err != nil {
		t.Fatal(err)
	}
	m := r.data.Counts
	if got.Records != m["train"] || got.Samples != m["train"] || got.TextOnly != m["train.text"] ||
		got.WithImage != m["train"]-m["train.text"] || got.Skipped != 0 || got.Tokens <= 0 || got.DataPath != r.data.Train {
		t.Errorf("data check = %+v; want %d records, %d text-only, none skipped, of %s", got, m["train"], m["train.text"], r.data.Train)
	}
	var out bytes.Buffer
	if err := dataMain([]string{"check", "--config", r.config}, &out); err != nil || !strings.Contains(out.String(), "no bad record") {
		t.Errorf("data check (text): %v\n%s", err, out.String())
	}

	uri := "synth://n=6,val=2,test=0,hr=96,seed=5,dir=" + t.TempDir()
	got, err = dataCheckJSON(t, "--config", r.config, "--set", "data_path="+uri, "--set", "tokenizer_path=", "--set", "image_folder=")
	if err != nil || got.Records != 6 || !strings.HasSuffix(got.DataPath, "train.json") {
		t.Errorf("data check of %s with no tokenizer_path: %+v, %v; want its 6 training records, read with its tokenizer", uri, got, err)
	}

	bad := missingImageCopy(t, r.data)
	got, err = dataCheckJSON(t, "--config", r.config, "--set", "data_path="+bad, "--set", "max_bad_fraction=0.5")
	if err != nil || got.Skipped != 1 || got.Bad[data.ReasonMissing] != 1 || got.Samples != m["train"]-1 {
		t.Errorf("one missing image: %+v, %v; want 1 skipped as %s", got.Counts, err, data.ReasonMissing)
	}
	if _, err := dataCheckJSON(t, "--config", r.config, "--set", "data_path="+bad, "--set", "max_bad_fraction=0"); !errors.Is(err, data.ErrSkipBudget) || !strings.Contains(err.Error(), bad) {
		t.Errorf("max_bad_fraction 0: err = %v; want ErrSkipBudget naming %s", err, bad)
	}
	if _, err := dataCheckJSON(t, "--config", r.config, "--set", "data_path="+bad, "--set", "bad_sample_policy=fail"); !errors.Is(err, data.ErrBadSample) || !strings.Contains(err.Error(), "gone.png") {
		t.Errorf("policy fail: err = %v; want ErrBadSample naming gone.png", err)
	}
}

// missingImageCopy writes the training split with its first image record pointing at a missing file.
func missingImageCopy(t *testing.T, m synth.Manifest) string {
	t.Helper()
	recs := readRecords(t, m.Train)
	i := slices.IndexFunc(recs, func(r synth.Record) bool { return r.Image != "" })
	recs[i].Image = "gone.png"
	b, err := json.Marshal(recs)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "bad.json")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// testDataInspect: the assembled sample is the record at that index, with the image where it belongs.
func testDataInspect(t *testing.T, r run) {
	recs := readRecords(t, r.data.Train)
	S, Z := r.cfg.Arch.Vision.ImageSize, r.cfg.Flex.Zoom
	for _, i := range []int{0, len(recs) - 1, slices.IndexFunc(recs, func(r synth.Record) bool { return r.Image == "" })} {
		var out bytes.Buffer
		if err := dataMain([]string{"inspect", "--config", r.config, "--index", itoa(i)}, &out); err != nil {
			t.Fatalf("data inspect --index %d: %v", i, err)
		}
		var got data.Inspection
		if err := json.Unmarshal(out.Bytes(), &got); err != nil {
			t.Fatalf("data inspect printed %q: %v", out.String(), err)
		}
		hasImage := recs[i].Image != ""
		if got.ID != recs[i].ID || slices.Contains(got.InputIDs, llava.ImageTokenID) != hasImage || len(got.Labels) != len(got.InputIDs) {
			t.Errorf("index %d: id %s, image marker %v, %d labels for %d ids; want %s, %v, equal lengths",
				i, got.ID, !hasImage, len(got.Labels), len(got.InputIDs), recs[i].ID, hasImage)
		}
		if hasImage && (!slices.Equal(got.HR.Shape, []int{3, Z * S, Z * S}) || !slices.Equal(got.LR.Shape, []int{3, S, S})) {
			t.Errorf("index %d: HR %v, LR %v; want [3 %d %d], [3 %d %d]", i, got.HR.Shape, got.LR.Shape, Z*S, Z*S, S, S)
		}
		if !strings.Contains(got.Prompt, recs[i].Answer()) {
			t.Errorf("index %d: prompt %q lacks the answer %q", i, got.Prompt, recs[i].Answer())
		}
	}
	var out bytes.Buffer
	if err := dataMain([]string{"inspect", "--config", r.config, "--index", itoa(len(recs))}, &out); err == nil || !strings.Contains(err.Error(), r.data.Train) {
		t.Errorf("index past the end: err = %v; want an error naming %s", err, r.data.Train)
	}
}

func itoa(i int) string { b, _ := json.Marshal(i); return string(b) }

// TestDataSynth: the command writes the dataset the options describe, reuses it when asked again, and
// --uri values are overridden by explicit flags.
func TestDataSynth(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ds")
	type manifest struct {
		Splits map[string]struct {
			File    string
			Samples int
			Kinds   map[string]int
		}
		Images int
		Reused bool
	}
	run := func(args ...string) manifest {
		t.Helper()
		var out bytes.Buffer
		if err := dataMain(append([]string{"synth", "--json"}, args...), &out); err != nil {
			t.Fatalf("data synth %v: %v", args, err)
		}
		var m manifest
		if err := json.Unmarshal(out.Bytes(), &m); err != nil {
			t.Fatalf("data synth printed %q: %v", out.String(), err)
		}
		return m
	}
	first := run("--out", dir, "--n", "10", "--val", "2", "--test", "0", "--hr", "96", "--text-frac", "0.2", "--seed", "3")
	tr := first.Splits["train"]
	if first.Reused || tr.Samples != 10 || tr.Kinds["text"] != 2 || len(readRecords(t, tr.File)) != 10 || first.Images != 10 {
		t.Errorf("first run: %+v; want 10 training samples (2 text-only) and 10 images, written", first)
	}
	if again := run("--uri", "synth://n=4,val=2,test=0,hr=96,text=0.2,seed=3,dir="+dir, "--n", "10"); !again.Reused {
		t.Errorf("same options through --uri and --n: reused = false; want the dataset reused")
	}
	var out bytes.Buffer
	if err := dataMain([]string{"synth", "--out", dir, "--n", "10", "--val", "2", "--test", "0", "--hr", "96", "--text-frac", "0.2", "--seed", "3"}, &out); err != nil ||
		!strings.Contains(out.String(), "10 samples: 4 small, 4 large, 2 text") {
		t.Errorf("data synth (text): %v\n%s", err, out.String())
	}
	for _, tt := range []struct {
		args []string
		text string
	}{
		{[]string{"--n", "3"}, "--out"},
		{[]string{"--out", dir, "--hr", "97"}, "hr"},
		{[]string{"--uri", "synth://n=1,bogus=2", "--out", dir}, "bogus"},
	} {
		if err := dataMain(append([]string{"synth"}, tt.args...), &out); err == nil || !strings.Contains(err.Error(), tt.text) {
			t.Errorf("data synth %v: err = %v; want an error mentioning %q", tt.args, err, tt.text)
		}
	}
}
