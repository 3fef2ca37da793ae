//go:build unix

package data

import (
	"errors"
	"maps"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/flextrain/flextrain/internal/fileio"
)

// specialFiles makes, in dir, a FIFO and a symbolic link to /dev/zero named name+".fifo" and name+".zero",
// and returns their paths by kind ("fifo", "devzero"). The link is left out where /dev/zero does not exist.
func specialFiles(t *testing.T, dir, name string) map[string]string {
	t.Helper()
	paths := map[string]string{"fifo": filepath.Join(dir, name+".fifo")}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(paths["fifo"], 0o644); err != nil {
		t.Fatalf("mkfifo: %v", err)
	}
	if _, err := os.Stat("/dev/zero"); err == nil {
		paths["devzero"] = filepath.Join(dir, name+".zero")
		if err := os.Symlink("/dev/zero", paths["devzero"]); err != nil {
			t.Fatalf("symlink: %v", err)
		}
	}
	return paths
}

// returns runs f in a goroutine and returns its error; a call still blocked after a minute fails the test,
// so that a regression (an open that waits for a FIFO's writer) fails instead of hanging the test binary.
func returns(t *testing.T, f func() error) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- f() }()
	select {
	case err := <-done:
		return err
	case <-time.After(time.Minute):
		t.Fatal("still blocked after a minute")
		return nil
	}
}

// TestOpenRefusesSpecialFiles gives a FIFO and a link to /dev/zero as data_path and as tokenizer_path.
func TestOpenRefusesSpecialFiles(t *testing.T) {
	f := newFixture(t, 2)
	for kind, path := range specialFiles(t, f.dir, "special") {
		for _, field := range []string{"data_path", "tokenizer_path", "tags"} {
			t.Run(field+"/"+kind, func(t *testing.T) {
				o := f.options(t)
				var call func() error
				switch field {
				case "data_path":
					o.DataPath = path
					call = func() error { _, err := Open(o); return err }
				case "tokenizer_path":
					o.Tokenizer, o.TokenizerPath = nil, path
					call = func() error { _, err := Open(o); return err }
				case "tags":
					call = func() error { _, err := TagClasses(path); return err }
				}
				if err := returns(t, call); !errors.Is(err, fileio.ErrNotRegular) {
					t.Errorf("got %v; want fileio.ErrNotRegular", err)
				}
			})
		}
	}
}

// TestSpecialImageIsMissing gives a FIFO and a link to /dev/zero to LoadImage: ErrImageMissing at once.
func TestSpecialImageIsMissing(t *testing.T) {
	for kind, path := range specialFiles(t, t.TempDir(), "special") {
		t.Run(kind, func(t *testing.T) {
			err := returns(t, func() error { _, err := LoadImage(path); return err })
			if !errors.Is(err, ErrImageMissing) || !errors.Is(err, fileio.ErrNotRegular) {
				t.Errorf("got %v; want ErrImageMissing wrapping fileio.ErrNotRegular", err)
			}
		})
	}
}

// TestLoaderCountsSpecialImages gives a FIFO and a link to /dev/zero as the image files of records: bad
// samples counted as missing (the link leaves the image folder: path_outside_folder), never a hang.
func TestLoaderCountsSpecialImages(t *testing.T) {
	f := newFixture(t, 0)
	special := specialFiles(t, f.folder, "special")
	f.records = []fixtureRecord{
		{ID: "fifo", Image: "special.fifo", Conversations: conv("<image>\nq", "a")},
		{ID: "zero", Image: "special.zero", Conversations: conv("<image>\nq", "a")},
		{ID: "text", Conversations: conv("q", "a")},
	}
	f.write(t, f.data, false)
	var got Counts
	err := returns(t, func() error {
		var err error
		got, err = Check(t.Context(), f.options(t))
		return err
	})
	want := map[string]int{ReasonMissing: 1}
	if _, ok := special["devzero"]; ok {
		want[ReasonOutside] = 1
	}
	if err != nil || got.Samples != 1 || !maps.Equal(got.Bad, want) {
		t.Errorf("got %+v, %v; want 1 sample and bad %v", got, err, want)
	}
}
