package train

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/flextrain/flextrain/checkpoints"
)

// fullDisk is the real file system, except that every file created under a directory whose name begins
// with prefix takes no byte: its writes fail with ENOSPC, as on a full disk.
type fullDisk struct {
	checkpoints.FS
	prefix string
}

func (d fullDisk) Create(path string) (checkpoints.File, error) {
	f, err := d.FS.Create(path)
	if err != nil || !strings.HasPrefix(filepath.Base(filepath.Dir(path)), d.prefix) {
		return f, err
	}
	return noSpace{f}, nil
}

type noSpace struct{ checkpoints.File }

func (noSpace) Write([]byte) (int, error) { return 0, syscall.ENOSPC }

// TestRunStopsWhenSaveFails is docs/RELIABILITY.md §13 at the loop's level: the save of step 4 hits a full
// disk, so the run stops with an error that wraps ENOSPC and names the checkpoint, no temporary directory is
// left, and the checkpoint of step 2 is still the newest that loads.
func TestRunStopsWhenSaveFails(t *testing.T) {
	cfg := tinyConfig(t, "max_steps=6", "save_steps=2")
	fs := fullDisk{FS: checkpoints.OS, prefix: "checkpoint-4.tmp-"}
	s, _, err := runTiny(t, context.Background(), cfg, RunOptions{FS: fs})
	want := filepath.Join(cfg.OutputDir, "checkpoint-4")
	if !errors.Is(err, syscall.ENOSPC) || !strings.Contains(err.Error(), want) {
		t.Fatalf("Run: %v; want an error wrapping ENOSPC naming %s", err, want)
	}
	if s.Steps != 4 {
		t.Errorf("summary global_step = %d; want 4 (the run stops at the failed save)", s.Steps)
	}
	if e, err := checkpoints.Latest(cfg.OutputDir); err != nil || e.Step != 2 {
		t.Errorf("Latest = %+v, %v; want the intact checkpoint of step 2", e, err)
	}
	entries, err := os.ReadDir(cfg.OutputDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.Contains(e.Name(), ".tmp-") || e.Name() == "checkpoint-4" {
			t.Errorf("output_dir holds %s after the failed save", e.Name())
		}
	}
}
