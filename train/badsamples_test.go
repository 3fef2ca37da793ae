package train

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRunRecordsBadSampleCounts: a run over data with bad records skips them under the skip policy and
// writes their counts, by reason, into trainer_state.json. One epoch of the 96 tiny records and four bad
// ones (a missing image, an image path outside image_folder, a record without conversations, a record past
// max_record_bytes) is 25 batches of 4, so the checkpoint of step 25 has seen each record once.
func TestRunRecordsBadSampleCounts(t *testing.T) {
	var recs []json.RawMessage
	b, err := os.ReadFile("../testdata/tiny/train.json")
	if err == nil {
		err = json.Unmarshal(b, &recs)
	}
	if err != nil {
		t.Fatal(err)
	}
	recs = append(recs,
		json.RawMessage(`{"id":"bad-missing","image":"no-such-image.png","conversations":[{"from":"human","value":"<image>\nWhat?"},{"from":"gpt","value":"red"}]}`),
		json.RawMessage(`{"id":"bad-outside","image":"../../tiny/train.json","conversations":[{"from":"human","value":"<image>\nWhat?"},{"from":"gpt","value":"red"}]}`),
		json.RawMessage(`{"id":"bad-malformed","image":"train-000000.png","conversations":"not a list"}`),
		json.RawMessage(`{"id":"bad-huge","conversations":[{"from":"human","value":"`+strings.Repeat("why ", 4096)+`"},{"from":"gpt","value":"red"}]}`))
	path := filepath.Join(t.TempDir(), "train.json")
	out, _ := json.Marshal(recs)
	if err := os.WriteFile(path, out, 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := tinyConfig(t, "data_path="+path, "bad_sample_policy=skip", "max_bad_fraction=0.1",
		"gradient_accumulation_steps=1", "max_steps=25", "max_record_bytes=4096")
	mustRun(t, cfg, RunOptions{})
	c := stateOf(t, loadCheckpoint(t, cfg.OutputDir, 25)).Counts
	want := map[string]int{"missing": 1, "path_outside_folder": 1, "malformed_record": 1, "record_too_large": 1}
	if c.Records != 100 || c.Samples != 96 || c.Skipped != 4 || len(c.Bad) != len(want) {
		t.Errorf("data_counts = %+v; want 100 records, 96 samples, 4 skipped, bad %v", c, want)
	}
	for reason, n := range want {
		if c.Bad[reason] != n {
			t.Errorf("data_counts.bad[%s] = %d; want %d", reason, c.Bad[reason], n)
		}
	}
}
