package checkpoints

import (
	"encoding/json"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/flextrain/flextrain/safetensors"
)

// TestWriteFileAtomicOrder checks docs/RELIABILITY.md §2 for single files: tmp in the same directory, write,
// Sync, Close, Rename, directory Sync.
func TestWriteFileAtomicOrder(t *testing.T) {
	dir := t.TempDir()
	fsys := newFaultFS(dir)
	if err := writeSafetensors(fsys, filepath.Join(dir, "out.safetensors"), tinyCheckpoint(1).Weights, nil); err != nil {
		t.Fatal(err)
	}
	if len(fsys.log) != 6 || !strings.HasPrefix(fsys.log[0], "create out.safetensors.tmp-") {
		t.Fatalf("calls: got %q; want create of out.safetensors.tmp-<hex> first and 6 calls", fsys.log)
	}
	tmp := strings.TrimPrefix(fsys.log[0], "create ")
	want := []string{"create " + tmp, "write " + tmp, "sync " + tmp, "close " + tmp, "rename " + tmp + " out.safetensors", "syncdir ."}
	if !slices.Equal(fsys.log, want) {
		t.Errorf("calls:\ngot  %q\nwant %q", fsys.log, want)
	}
}

// TestWriteFileAtomicFaults: a failing write, Sync or Rename leaves the old file and no temporary.
func TestWriteFileAtomicFaults(t *testing.T) {
	for _, op := range []string{"create", "write", "sync", "close", "rename"} {
		dir := t.TempDir()
		path := filepath.Join(dir, "config.json")
		writeBytes(t, path, []byte("old"))
		fsys := newFaultFS(dir)
		fsys.failAt[op] = 1
		err := writeFileAtomic(fsys, path, []byte("new content"))
		if !errors.Is(err, errInjected) || !strings.Contains(err.Error(), path) {
			t.Errorf("%s fails: got %v; want the injected fault naming %s", op, err, path)
		}
		if b := readBytes(t, path); string(b) != "old" {
			t.Errorf("%s fails: file now %q; want \"old\"", op, b)
		}
		if names := dirNames(t, dir); !slices.Equal(names, []string{"config.json"}) {
			t.Errorf("%s fails: dir %v; want [config.json]", op, names)
		}
	}
}

func TestWriteJSON(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config.json")
	want := map[string]any{"n_sa": 2.0, "layers": []any{2.0, 5.0}, "base": "llava-1.5-7b"}
	if err := WriteJSON(path, want); err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(readBytes(t, path), &got); err != nil {
		t.Fatalf("read back: %v", err)
	}
	if b1, b2 := mustJSON(t, got), mustJSON(t, want); b1 != b2 {
		t.Errorf("got %s; want %s", b1, b2)
	}
}

func mustJSON(t *testing.T, v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestInspectCheckpoint(t *testing.T) {
	path := mustSave(t, t.TempDir(), 9)
	info, err := Inspect(path)
	if err != nil {
		t.Fatalf("Inspect: %v", err)
	}
	if info.Step != 9 || len(info.Files) != len(payloadFiles) {
		t.Errorf("got step %d, %d files; want step 9, %d files", info.Step, len(info.Files), len(payloadFiles))
	}
	want := tinyCheckpoint(9)
	if len(info.Tensors) != len(want.Weights)+len(want.Optimizer) {
		t.Fatalf("got %d tensors; want %d", len(info.Tensors), len(want.Weights)+len(want.Optimizer))
	}
	for _, ti := range info.Tensors {
		group := map[string]map[string]safetensors.Tensor{"weights": want.Weights, "optimizer": want.Optimizer}[ti.Group]
		w, ok := group[ti.Name]
		if !ok || ti.DType != w.DType || !slices.Equal(ti.Shape, w.Shape) || ti.Bytes != len(w.Data) {
			t.Errorf("tensor %s/%s: got %s%v %d bytes; want %s%v %d bytes", ti.Group, ti.Name, ti.DType, ti.Shape, ti.Bytes, w.DType, w.Shape, len(w.Data))
		}
	}
	var disk int64
	for _, name := range payloadFiles {
		disk += int64(len(readBytes(t, filepath.Join(path, name))))
	}
	if info.StoredBytes() != disk || info.Ratio() <= 0 {
		t.Errorf("stored %d bytes, ratio %.3f; want %d bytes and a positive ratio", info.StoredBytes(), info.Ratio(), disk)
	}
}

func TestInspectFiles(t *testing.T) {
	dir := t.TempDir()
	ckPath := mustSave(t, dir, 2)
	plain := filepath.Join(dir, "flex.safetensors")
	if err := WriteSafetensors(plain, tinyCheckpoint(2).Weights, nil); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{plain, filepath.Join(ckPath, weightsFile)} {
		info, err := Inspect(p)
		if err != nil {
			t.Fatalf("Inspect %s: %v", p, err)
		}
		if info.Step != -1 || len(info.Tensors) != len(tinyCheckpoint(2).Weights) {
			t.Errorf("%s: got step %d, %d tensors; want -1, %d", p, info.Step, len(info.Tensors), len(tinyCheckpoint(2).Weights))
		}
	}
}

// TestInspectCorrupt: Inspect reports the failure and still returns what verified.
func TestInspectCorrupt(t *testing.T) {
	dir := t.TempDir()
	flip(3, optimizerFile)(t, dir)
	info, err := Inspect(filepath.Join(dir, "checkpoint-3"))
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Inspect: got %v; want ErrCorrupt", err)
	}
	if info.Step != 3 || len(info.Files) != 1 || info.Files[0].Name != weightsFile {
		t.Errorf("got step %d, files %v; want step 3 and only %s", info.Step, info.Files, weightsFile)
	}
	if _, err := Inspect(filepath.Join(dir, "nope")); !errors.Is(err, ErrNotFound) {
		t.Errorf("Inspect missing path: got %v; want ErrNotFound", err)
	}
}
