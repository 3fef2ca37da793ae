package checkpoints

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
)

func TestSaveLoadRoundTrip(t *testing.T) {
	empty := tinyCheckpoint(3)
	empty.Optimizer, empty.Config = nil, nil
	for _, tc := range []struct {
		name string
		ck   *Checkpoint
	}{
		{"full", tinyCheckpoint(12)},
		{"step zero", tinyCheckpoint(0)},
		{"no optimizer state, empty config", empty},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path, err := Save(dir, tc.ck)
			if err != nil {
				t.Fatalf("Save: %v", err)
			}
			if want := filepath.Join(dir, dirName(tc.ck.Step)); path != want {
				t.Errorf("Save path: got %s; want %s", path, want)
			}
			got, err := Load(path)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if err := sameCheckpoint(got, tc.ck); err != nil {
				t.Error(err)
			}
		})
	}
}

func TestSaveRefusesBadInput(t *testing.T) {
	badState := tinyCheckpoint(1)
	badState.State = []byte(`{"step":`)
	negative := tinyCheckpoint(1)
	negative.Step = -1
	badTensor := tinyCheckpoint(1)
	w := badTensor.Weights["flex.0.alpha"]
	w.Shape = []int{3}
	badTensor.Weights["flex.0.alpha"] = w
	bigConfig := tinyCheckpoint(1)
	bigConfig.Config = make([]byte, maxPlainFile+1)
	for name, ck := range map[string]*Checkpoint{"state not JSON": badState, "negative step": negative,
		"tensor shape/data disagree": badTensor, "config larger than Load reads": bigConfig} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			if _, err := Save(dir, ck); err == nil {
				t.Fatal("Save: got nil error; want one")
			}
			if names := dirNames(t, dir); len(names) != 0 {
				t.Errorf("dir after refused Save: got %v; want empty", names)
			}
		})
	}
}

func TestSaveReplacesSameStep(t *testing.T) {
	dir := t.TempDir()
	mustSave(t, dir, 5)
	ck := tinyCheckpoint(5)
	ck.State = []byte(`{"replaced":true}`)
	path, err := Save(dir, ck)
	if err != nil {
		t.Fatalf("Save over step 5: %v", err)
	}
	got, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := sameCheckpoint(got, ck); err != nil {
		t.Error(err)
	}
	if names := dirNames(t, dir); !slices.Equal(names, []string{"checkpoint-5"}) {
		t.Errorf("dir: got %v; want [checkpoint-5]", names)
	}
}

// TestSaveDurabilityOrder checks docs/RELIABILITY.md §2: each file is created, written, synced and closed
// inside a temporary directory next to the final one; MANIFEST comes last; then the directory is synced,
// renamed, and the parent synced.
func TestSaveDurabilityOrder(t *testing.T) {
	dir := t.TempDir()
	fsys := newFaultFS(dir)
	if _, err := (Store{Dir: dir, FS: fsys}).Save(tinyCheckpoint(4)); err != nil {
		t.Fatal(err)
	}
	var tmp string
	for _, l := range fsys.log {
		if rest, ok := strings.CutPrefix(l, "mkdir "); ok {
			tmp = rest
		}
	}
	if !staleName.MatchString(tmp) || !strings.HasPrefix(tmp, "checkpoint-4.tmp-") {
		t.Fatalf("temporary directory: got %q; want checkpoint-4.tmp-<hex> in the output directory", tmp)
	}
	var want []string
	want = append(want, "mkdirall .", "mkdir "+tmp)
	for _, name := range append(slices.Clone(payloadFiles), manifestFile) {
		p := filepath.Join(tmp, name)
		want = append(want, "create "+p, "write "+p, "sync "+p, "close "+p)
	}
	want = append(want, "syncdir "+tmp, "rename "+tmp+" checkpoint-4", "syncdir .")
	if !slices.Equal(fsys.log, want) {
		t.Errorf("call order:\ngot  %q\nwant %q", fsys.log, want)
	}
}

// checkPreviousIntact asserts that after a failed save of step 2, dir holds exactly what it held before
// (checkpoint-1 and a foreign file), and that checkpoint-1 is still the latest and loads.
func checkPreviousIntact(t *testing.T, dir string) {
	t.Helper()
	if names := dirNames(t, dir); !slices.Equal(names, []string{"checkpoint-1", "notes.txt"}) {
		t.Errorf("dir after failed save: got %v; want [checkpoint-1 notes.txt]", names)
	}
	e, err := Latest(dir)
	if err != nil || e.Step != 1 {
		t.Errorf("Latest: got step %d, err %v; want step 1", e.Step, err)
	}
	ck, err := Load(filepath.Join(dir, "checkpoint-1"))
	if err != nil {
		t.Fatalf("Load previous: %v", err)
	}
	if err := sameCheckpoint(ck, tinyCheckpoint(1)); err != nil {
		t.Error(err)
	}
}

// previousDir returns an output directory holding checkpoint-1 and a foreign file.
func previousDir(t *testing.T) string {
	dir := t.TempDir()
	mustSave(t, dir, 1)
	writeBytes(t, filepath.Join(dir, "notes.txt"), []byte("not a checkpoint"))
	return dir
}

// TestSaveWriterFailsAfterKBytes checks docs/RELIABILITY.md §1: a disk that fails after k bytes, for k across
// the whole size of a checkpoint, leaves the previous checkpoint loadable and nothing else behind.
func TestSaveWriterFailsAfterKBytes(t *testing.T) {
	var total int64
	probe := t.TempDir()
	for _, name := range append(slices.Clone(payloadFiles), manifestFile) {
		total += int64(len(readBytes(t, filepath.Join(mustSave(t, probe, 2), name))))
	}
	dir := previousDir(t)
	for k := int64(0); k < total; k += total/48 + 1 {
		fsys := newFaultFS(dir)
		fsys.budget = k
		_, err := (Store{Dir: dir, FS: fsys}).Save(tinyCheckpoint(2))
		if !errors.Is(err, errInjected) {
			t.Fatalf("k=%d: Save error: got %v; want the injected fault", k, err)
		}
		checkPreviousIntact(t, dir)
	}
	fsys := newFaultFS(dir)
	fsys.budget = total
	if _, err := (Store{Dir: dir, FS: fsys}).Save(tinyCheckpoint(2)); err != nil {
		t.Errorf("budget = full size %d: got %v; want success", total, err)
	}
}

// TestSaveFaults checks docs/RELIABILITY.md §1 and §13: any failing call during a save (ENOSPC on the n-th
// write, a failing Sync, Close, Rename or directory sync) returns an error that wraps the cause and names the
// path, removes the temporary directory and leaves the previous checkpoint the latest.
func TestSaveFaults(t *testing.T) {
	for _, tc := range []struct {
		op, wantPath string
		n            int
	}{
		{"write", "weights.st.zst", 1}, {"write", "optimizer.st.zst", 2}, {"write", "trainer_state.json", 3},
		{"write", "config.yaml", 4}, {"write", "MANIFEST", 5},
		{"sync", "weights.st.zst", 1}, {"sync", "MANIFEST", 5}, {"close", "optimizer.st.zst", 2},
		{"create", "weights.st.zst", 1}, {"mkdir", "checkpoint-2.tmp-", 1},
		{"syncdir", "checkpoint-2.tmp-", 1}, {"rename", "checkpoint-2.tmp-", 1}, {"syncdir", "sync directory", 2},
	} {
		for _, cause := range []error{syscall.ENOSPC, syscall.EIO} {
			dir := previousDir(t)
			fsys := newFaultFS(dir)
			fsys.failAt[tc.op], fsys.err = tc.n, cause
			_, err := (Store{Dir: dir, FS: fsys}).Save(tinyCheckpoint(2))
			if !errors.Is(err, cause) {
				t.Errorf("%s #%d: got %v; want an error wrapping %v", tc.op, tc.n, err, cause)
			}
			if err != nil && !strings.Contains(err.Error(), tc.wantPath) {
				t.Errorf("%s #%d: error %q does not name %s", tc.op, tc.n, err, tc.wantPath)
			}
			checkPreviousIntact(t, dir)
		}
	}
}

// TestSaveReplaceFaults: when replacing a checkpoint of the same step fails, the old one stays in place.
func TestSaveReplaceFaults(t *testing.T) {
	for _, tc := range []struct {
		op string
		n  int
	}{{"rename", 1}, {"rename", 2}, {"syncdir", 2}} {
		dir := t.TempDir()
		mustSave(t, dir, 1)
		fsys := newFaultFS(dir)
		fsys.failAt[tc.op] = tc.n
		ck := tinyCheckpoint(1)
		ck.State = []byte(`{"new":true}`)
		if _, err := (Store{Dir: dir, FS: fsys}).Save(ck); !errors.Is(err, errInjected) {
			t.Errorf("%s #%d: got %v; want the injected fault", tc.op, tc.n, err)
		}
		if names := dirNames(t, dir); !slices.Equal(names, []string{"checkpoint-1"}) {
			t.Errorf("%s #%d: dir: got %v; want [checkpoint-1]", tc.op, tc.n, names)
		}
		got, err := Load(filepath.Join(dir, "checkpoint-1"))
		if err != nil {
			t.Fatalf("%s #%d: Load: %v", tc.op, tc.n, err)
		}
		if err := sameCheckpoint(got, tinyCheckpoint(1)); err != nil {
			t.Errorf("%s #%d: old checkpoint changed: %v", tc.op, tc.n, err)
		}
	}
}

// TestSaveKeepsForeignFileOfFinalName: a file (not a directory) named like the checkpoint is not replaced.
func TestSaveKeepsForeignFileOfFinalName(t *testing.T) {
	dir := t.TempDir()
	writeBytes(t, filepath.Join(dir, "checkpoint-3"), []byte("user notes"))
	if _, err := Save(dir, tinyCheckpoint(3)); err == nil || !strings.Contains(err.Error(), "checkpoint-3") {
		t.Errorf("Save: got %v; want an error naming checkpoint-3", err)
	}
	if b := readBytes(t, filepath.Join(dir, "checkpoint-3")); string(b) != "user notes" {
		t.Errorf("foreign file now %q; want it unchanged", b)
	}
	if names := dirNames(t, dir); !slices.Equal(names, []string{"checkpoint-3"}) {
		t.Errorf("dir: got %v; want [checkpoint-3]", names)
	}
}

// TestSaveRemovesStaleTemporaries: the next Save removes what a crashed save left, and nothing else.
func TestSaveRemovesStaleTemporaries(t *testing.T) {
	dir := t.TempDir()
	keep := []string{"checkpoint-3.tmpfoo", "notes.tmp-ab12", "checkpoint-x.tmp-ab12"}
	for _, name := range append([]string{"checkpoint-3.tmp-0a1b2c"}, keep...) {
		if err := os.Mkdir(filepath.Join(dir, name), 0o755); err != nil {
			t.Fatal(err)
		}
		writeBytes(t, filepath.Join(dir, name, "weights.st.zst"), []byte("partial"))
	}
	writeBytes(t, filepath.Join(dir, "checkpoint-4.tmp-99"), []byte("a file, not a directory"))
	mustSave(t, dir, 5)
	want := append(slices.Clone(keep), "checkpoint-4.tmp-99", "checkpoint-5")
	slices.Sort(want)
	if got := dirNames(t, dir); !slices.Equal(got, want) {
		t.Errorf("dir after Save: got %v; want %v", got, want)
	}
}
