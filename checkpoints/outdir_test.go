package checkpoints

import (
	"errors"
	"path/filepath"
	"slices"
	"testing"
)

// TestSetAside: the checkpoint directories newer than the step, complete or not, move into the aside
// folder; older ones, the step's own and foreign files stay, and List sees only what stayed.
func TestSetAside(t *testing.T) {
	for _, tc := range []struct {
		name      string
		setup     []func(*testing.T, string)
		step      int
		wantMoved []string
		wantKept  []int
	}{
		{"nothing newer", []func(*testing.T, string){ckpt(2, 4)}, 4, nil, []int{2, 4}},
		{"rollback", []func(*testing.T, string){ckpt(2, 4, 6, 8)}, 4, []string{"checkpoint-6", "checkpoint-8"}, []int{2, 4}},
		{"damaged and unfinished too", []func(*testing.T, string){ckpt(2), flip(6, weightsFile), mkdir("checkpoint-9"),
			file("notes.txt", "x"), mkdir("checkpoint-7.tmp-0a")}, 2, []string{"checkpoint-6", "checkpoint-9"}, []int{2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			for _, f := range tc.setup {
				f(t, dir)
			}
			moved, err := Store{Dir: dir}.SetAside(tc.step, "aside")
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, m := range moved {
				if filepath.Dir(m) != filepath.Join(dir, "aside") {
					t.Errorf("moved to %s; want into %s/aside", m, dir)
				}
				names = append(names, filepath.Base(m))
			}
			if !slices.Equal(names, tc.wantMoved) {
				t.Errorf("moved %v; want %v", names, tc.wantMoved)
			}
			list, _ := List(dir)
			if got := steps(list); !slices.Equal(got, tc.wantKept) {
				t.Errorf("List after SetAside = %v; want %v", got, tc.wantKept)
			}
		})
	}
}

// TestRemoveAll: every checkpoint directory goes, complete, damaged or unfinished; foreign files stay.
func TestRemoveAll(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []func(*testing.T, string){ckpt(2, 4), flip(6, weightsFile), mkdir("checkpoint-9"), file("notes.txt", "x")} {
		f(t, dir)
	}
	removed, err := Store{Dir: dir}.RemoveAll()
	if err != nil || len(removed) != 4 {
		t.Fatalf("RemoveAll = %v, %v; want the 4 checkpoint directories", removed, err)
	}
	if got := dirNames(t, dir); !slices.Equal(got, []string{"notes.txt"}) {
		t.Errorf("left in the directory: %v; want [notes.txt]", got)
	}
}

// TestStoreWriteFile: WriteFile replaces a file atomically and leaves no temporary file; a failing
// rename keeps the old content.
func TestStoreWriteFile(t *testing.T) {
	dir := t.TempDir()
	s := Store{Dir: filepath.Join(dir, "new")}
	for _, content := range []string{"first", "second"} {
		if err := s.WriteFile("config.yaml", []byte(content)); err != nil {
			t.Fatal(err)
		}
		if got := string(readBytes(t, filepath.Join(s.Dir, "config.yaml"))); got != content {
			t.Errorf("config.yaml = %q; want %q", got, content)
		}
	}
	fsys := newFaultFS(dir)
	fsys.failAt["rename"] = 1
	failing := Store{Dir: s.Dir, FS: fsys}
	if err := failing.WriteFile("config.yaml", []byte("third")); err == nil {
		t.Error("WriteFile with a failing rename succeeded")
	}
	if got := string(readBytes(t, filepath.Join(s.Dir, "config.yaml"))); got != "second" {
		t.Errorf("config.yaml after a failed write = %q; want the old %q", got, "second")
	}
	if got := dirNames(t, s.Dir); !slices.Equal(got, []string{"config.yaml"}) {
		t.Errorf("files left: %v; want only config.yaml", got)
	}
}

// TestReadConfig: the configuration comes back verified, without the tensors; a damaged one is ErrCorrupt.
func TestReadConfig(t *testing.T) {
	dir := t.TempDir()
	path := mustSave(t, dir, 3)
	b, err := Store{}.ReadConfig(path)
	if err != nil || string(b) != string(tinyCheckpoint(3).Config) {
		t.Fatalf("ReadConfig = %q, %v; want the saved config", b, err)
	}
	p := filepath.Join(path, configFile)
	c := readBytes(t, p)
	c[0] ^= 1
	writeBytes(t, p, c)
	if _, err := (Store{}).ReadConfig(path); !errors.Is(err, ErrCorrupt) {
		t.Errorf("ReadConfig of a damaged config.yaml: %v; want ErrCorrupt", err)
	}
}
