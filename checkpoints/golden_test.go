package checkpoints

import (
	"bytes"
	"path/filepath"
	"slices"
	"testing"
)

// golden is tinyCheckpoint(7) as the first release of format version 1 wrote it.
var golden = filepath.Join("testdata", "format-v1", "checkpoint-7")

// TestFormatV1Golden: checkpoints written before the streaming reader still load, and Save still writes
// them byte for byte, so FormatVersion 1 means one format.
func TestFormatV1Golden(t *testing.T) {
	ck, err := Store{Limits: tinyLimits()}.Load(golden)
	if err != nil {
		t.Fatalf("Load %s: %v", golden, err)
	}
	if err := sameCheckpoint(ck, tinyCheckpoint(7)); err != nil {
		t.Error(err)
	}
	path := mustSave(t, t.TempDir(), 7)
	for _, name := range append(slices.Clone(payloadFiles), manifestFile) {
		got, want := readBytes(t, filepath.Join(path, name)), readBytes(t, filepath.Join(golden, name))
		if !bytes.Equal(got, want) {
			t.Errorf("%s: Save wrote %d bytes that differ from the %d of %s", name, len(got), len(want), golden)
		}
	}
}
