package checkpoints

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// Fixture builders for an output directory.
func ckpt(steps ...int) func(t *testing.T, dir string) {
	return func(t *testing.T, dir string) {
		for _, s := range steps {
			mustSave(t, dir, s)
		}
	}
}

func mkdir(name string) func(t *testing.T, dir string) {
	return func(t *testing.T, dir string) {
		if err := os.MkdirAll(filepath.Join(dir, name), 0o755); err != nil {
			t.Fatal(err)
		}
	}
}

func file(name, content string) func(t *testing.T, dir string) {
	return func(t *testing.T, dir string) { writeBytes(t, filepath.Join(dir, name), []byte(content)) }
}

// saveAs saves the checkpoint of step and renames its directory to name.
func saveAs(step int, name string) func(t *testing.T, dir string) {
	return func(t *testing.T, dir string) {
		tmp := t.TempDir()
		if err := os.Rename(mustSave(t, tmp, step), filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
}

// without saves the checkpoint of step and deletes one of its files.
func without(step int, name string) func(t *testing.T, dir string) {
	return func(t *testing.T, dir string) {
		if err := os.Remove(filepath.Join(mustSave(t, dir, step), name)); err != nil {
			t.Fatal(err)
		}
	}
}

// flip saves the checkpoint of step and flips one byte in the middle of one of its files.
func flip(step int, name string) func(t *testing.T, dir string) {
	return func(t *testing.T, dir string) {
		p := filepath.Join(mustSave(t, dir, step), name)
		b := readBytes(t, p)
		b[len(b)/2] ^= 1
		writeBytes(t, p, b)
	}
}

// newerVersion saves the checkpoint of step with a manifest that claims format version 2.
func newerVersion(step int) func(t *testing.T, dir string) {
	return func(t *testing.T, dir string) {
		p := filepath.Join(mustSave(t, dir, step), manifestFile)
		writeBytes(t, p, refreeze(setU32(readBytes(t, p), 8, FormatVersion+1)))
	}
}

// TestListLatestFixtures checks docs/RELIABILITY.md §3: only complete checkpoints are listed, and Latest picks
// the newest one that verifies.
func TestListLatestFixtures(t *testing.T) {
	for _, tc := range []struct {
		name       string
		build      []func(*testing.T, string)
		wantList   []int
		wantLatest int   // when wantErr is nil
		wantErr    error // of Latest
	}{
		{"empty output dir", nil, []int{}, 0, ErrNotFound},
		{"two checkpoints", []func(*testing.T, string){ckpt(10, 2)}, []int{2, 10}, 10, nil},
		{"numeric not lexical order", []func(*testing.T, string){ckpt(9, 10, 100)}, []int{9, 10, 100}, 100, nil},
		{"stray tmp of a crashed save", []func(*testing.T, string){ckpt(1), saveAs(5, "checkpoint-5.tmp-0a1b")}, []int{1}, 1, nil},
		{"only a stray tmp", []func(*testing.T, string){saveAs(5, "checkpoint-5.tmp-0a1b")}, []int{}, 0, ErrNotFound},
		{"empty checkpoint dir", []func(*testing.T, string){ckpt(1), mkdir("checkpoint-9")}, []int{1}, 1, nil},
		{"no manifest", []func(*testing.T, string){ckpt(1), without(9, manifestFile)}, []int{1}, 1, nil},
		{"empty manifest", []func(*testing.T, string){ckpt(1), without(9, manifestFile), file("checkpoint-9/MANIFEST", "")}, []int{1}, 1, nil},
		{"foreign files and names", []func(*testing.T, string){
			ckpt(1), file("checkpoint-8", "a file"), file("notes.txt", "x"), mkdir("checkpoint-x"),
			saveAs(7, "checkpoint-07"), saveAs(7, "checkpoint--7"), mkdir("runs/checkpoint-3"),
		}, []int{1}, 1, nil},
		{"manifest of another step", []func(*testing.T, string){ckpt(1), saveAs(2, "checkpoint-4")}, []int{1}, 1, nil},
		{"corrupt newest falls back", []func(*testing.T, string){ckpt(1, 2), flip(3, weightsFile)}, []int{1, 2, 3}, 2, nil},
		{"newest missing a file falls back", []func(*testing.T, string){ckpt(1), without(3, configFile)}, []int{1, 3}, 1, nil},
		{"all corrupt", []func(*testing.T, string){flip(1, optimizerFile), flip(2, stateFile)}, []int{1, 2}, 0, ErrCorrupt},
		{"only a damaged manifest", []func(*testing.T, string){flip(4, manifestFile)}, []int{}, 0, ErrCorrupt},
		{"damaged manifest beside a good one", []func(*testing.T, string){ckpt(1), flip(4, manifestFile)}, []int{1}, 1, nil},
		{"only a newer format", []func(*testing.T, string){newerVersion(4)}, []int{}, 0, ErrVersion},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			for _, b := range tc.build {
				b(t, dir)
			}
			list, err := List(dir)
			if err != nil {
				t.Fatalf("List: %v", err)
			}
			if got := steps(list); !slices.Equal(got, tc.wantList) {
				t.Errorf("List: got %v; want %v", got, tc.wantList)
			}
			e, err := Latest(dir)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Errorf("Latest: got (%d, %v); want %v", e.Step, err, tc.wantErr)
				}
				return
			}
			if err != nil || e.Step != tc.wantLatest || e.Path != filepath.Join(dir, dirName(tc.wantLatest)) {
				t.Errorf("Latest: got (%+v, %v); want step %d", e, err, tc.wantLatest)
			}
		})
	}
}

func TestListMissingDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "never-created")
	if list, err := List(dir); err != nil || len(list) != 0 {
		t.Errorf("List: got (%v, %v); want (none, nil)", list, err)
	}
	if _, err := Latest(dir); !errors.Is(err, ErrNotFound) {
		t.Errorf("Latest: got %v; want ErrNotFound", err)
	}
}

// TestResolve checks docs/RELIABILITY.md §5: auto falls back past a corrupt newest checkpoint with a warning
// naming the bad file; an explicit corrupt path is an error naming the path and the reason.
func TestResolve(t *testing.T) {
	dir := t.TempDir()
	mustSave(t, dir, 1)
	mustSave(t, dir, 2)
	flip(3, optimizerFile)(t, dir)
	bad := filepath.Join(dir, "checkpoint-3")
	for _, tc := range []struct {
		name, dir, spec string
		wantPath        string
		wantWarn        []string // substrings of the single warning, when one is expected
		wantErr         error
		wantMsg         []string // substrings of the error
	}{
		{name: "none", dir: dir, spec: "none"},
		{name: "empty spec", dir: dir, spec: ""},
		{name: "auto falls back", dir: dir, spec: "auto", wantPath: filepath.Join(dir, "checkpoint-2"),
			wantWarn: []string{filepath.Join(bad, optimizerFile), "SHA-256"}},
		{name: "auto on a fresh dir", dir: t.TempDir(), spec: "auto"},
		{name: "explicit good path", dir: dir, spec: filepath.Join(dir, "checkpoint-1"), wantPath: filepath.Join(dir, "checkpoint-1")},
		{name: "explicit corrupt path", dir: dir, spec: bad, wantErr: ErrCorrupt,
			wantMsg: []string{filepath.Join(bad, optimizerFile), "SHA-256 mismatch"}},
		{name: "explicit missing path", dir: dir, spec: filepath.Join(dir, "checkpoint-99"), wantErr: ErrNotFound,
			wantMsg: []string{"checkpoint-99"}},
		{name: "explicit incomplete path", dir: dir, spec: dir, wantErr: ErrNotFound, wantMsg: []string{"MANIFEST"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path, warnings, err := Resolve(tc.dir, tc.spec)
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil) != (err == nil) {
				t.Fatalf("error: got %v; want %v", err, tc.wantErr)
			}
			for _, s := range tc.wantMsg {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not contain %q", err, s)
				}
			}
			if path != tc.wantPath {
				t.Errorf("path: got %q; want %q", path, tc.wantPath)
			}
			if len(warnings) != min(len(tc.wantWarn), 1) {
				t.Fatalf("warnings: got %q; want %d", warnings, min(len(tc.wantWarn), 1))
			}
			for _, s := range tc.wantWarn {
				if !strings.Contains(warnings[0], s) {
					t.Errorf("warning %q does not contain %q", warnings[0], s)
				}
			}
		})
	}
}

// TestResolveAutoRefusesToStartOver: when every checkpoint fails, auto is an error, not a fresh start
// beside them.
func TestResolveAutoRefusesToStartOver(t *testing.T) {
	for _, tc := range []struct {
		name  string
		build func(*testing.T, string)
		want  error
	}{
		{"corrupt weights", flip(1, weightsFile), ErrCorrupt},
		{"corrupt manifest", flip(1, manifestFile), ErrCorrupt},
		{"newer format", newerVersion(1), ErrVersion},
	} {
		dir := t.TempDir()
		tc.build(t, dir)
		path, warnings, err := Resolve(dir, "auto")
		if !errors.Is(err, tc.want) || path != "" || len(warnings) != 1 {
			t.Errorf("%s: got (%q, %q, %v); want (\"\", one warning, %v)", tc.name, path, warnings, err, tc.want)
		}
	}
}

// TestPruneRetention checks docs/RELIABILITY.md §6: with keep = N, after S saves (each followed by Prune)
// exactly min(S, N) checkpoints remain, the newest ones including the one just written, and a foreign file is
// never touched; keep < 2 is refused.
func TestPruneRetention(t *testing.T) {
	for _, keep := range []int{1, 2, 3} {
		for saves := 0; saves <= 6; saves++ {
			dir := t.TempDir()
			writeBytes(t, filepath.Join(dir, "checkpoint-notes.txt"), []byte("foreign"))
			var want []int
			for s := 1; s <= saves; s++ {
				step := 10 * s
				mustSave(t, dir, step)
				want = append(want, step)
				_, err := Prune(dir, keep, step)
				if keep < 2 {
					if err == nil {
						t.Fatalf("keep=%d: got nil error; want a refusal", keep)
					}
					continue
				}
				if err != nil {
					t.Fatalf("keep=%d save %d: Prune: %v", keep, s, err)
				}
				want = want[max(0, len(want)-keep):]
			}
			list, err := List(dir)
			if err != nil {
				t.Fatal(err)
			}
			if keep >= 2 && !slices.Equal(steps(list), want) {
				t.Errorf("keep=%d saves=%d: got %v; want %v", keep, saves, steps(list), want)
			}
			if b := readBytes(t, filepath.Join(dir, "checkpoint-notes.txt")); string(b) != "foreign" {
				t.Errorf("keep=%d saves=%d: foreign file changed to %q", keep, saves, b)
			}
		}
	}
}

// TestPruneProtects: protected steps (the best one, the one just written) survive beyond keep, and
// incomplete or temporary directories are not Prune's to remove.
func TestPruneProtects(t *testing.T) {
	dir := t.TempDir()
	ckpt(10, 20, 30, 40, 50)(t, dir)
	without(60, manifestFile)(t, dir)
	mustSave(t, dir, 5) // written after the others, with a lower step (a resume that fell back)
	saveAs(70, "checkpoint-70.tmp-ab")(t, dir)
	removed, err := Prune(dir, 2, 20, 5)
	if err != nil {
		t.Fatal(err)
	}
	wantRemoved := []string{filepath.Join(dir, "checkpoint-10"), filepath.Join(dir, "checkpoint-30")}
	if !slices.Equal(removed, wantRemoved) {
		t.Errorf("removed: got %v; want %v", removed, wantRemoved)
	}
	want := []string{"checkpoint-20", "checkpoint-40", "checkpoint-5", "checkpoint-50", "checkpoint-60", "checkpoint-70.tmp-ab"}
	if got := dirNames(t, dir); !slices.Equal(got, want) {
		t.Errorf("dir: got %v; want %v", got, want)
	}
}

// TestPruneFaultLeavesNoHalfCheckpoint: if removal fails after the rename, what remains is a temporary
// directory that List ignores and the next Save removes.
func TestPruneFaultLeavesNoHalfCheckpoint(t *testing.T) {
	dir := t.TempDir()
	ckpt(1, 2, 3)(t, dir)
	fsys := newFaultFS(dir)
	fsys.failAt["removeall"] = 1
	if _, err := (Store{Dir: dir, FS: fsys}).Prune(2); !errors.Is(err, errInjected) {
		t.Fatalf("Prune: got %v; want the injected fault", err)
	}
	if list, _ := List(dir); !slices.Equal(steps(list), []int{2, 3}) {
		t.Errorf("List after failed prune: got %v; want [2 3]", steps(list))
	}
	mustSave(t, dir, 4)
	if got := dirNames(t, dir); !slices.Equal(got, []string{"checkpoint-2", "checkpoint-3", "checkpoint-4"}) {
		t.Errorf("dir after the next Save: got %v; want checkpoints 2, 3, 4 only", got)
	}
}
