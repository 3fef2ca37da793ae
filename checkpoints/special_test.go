package checkpoints

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"
)

// within runs f and fails the test if f has not returned after a generous timeout, so that a regression
// that blocks (a FIFO opened for reading) fails instead of hanging the test binary.
func within(t *testing.T, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatalf("%s did not return", what)
	}
}

// loadWithin is Store.Load under within.
func loadWithin(t *testing.T, s Store, path string) (ck *Checkpoint, err error) {
	t.Helper()
	within(t, "Load("+path+")", func() { ck, err = s.Load(path) })
	return ck, err
}

// specialFiles make a path a file Load must refuse to read.
var specialFiles = []struct {
	name string
	make func(path string) error
}{
	{"fifo", func(p string) error { return syscall.Mkfifo(p, 0o644) }},
	{"link to /dev/zero", func(p string) error { return os.Symlink("/dev/zero", p) }},
}

// TestLoadRefusesSpecialFiles: a checkpoint file or MANIFEST that is a FIFO or a symbolic link to
// /dev/zero is refused as corrupt before its first byte is read, so it neither blocks Load nor fills
// memory.
func TestLoadRefusesSpecialFiles(t *testing.T) {
	for _, file := range append(slices.Clone(payloadFiles), manifestFile) {
		for _, sp := range specialFiles {
			t.Run(file+" "+sp.name, func(t *testing.T) {
				path := mustSave(t, t.TempDir(), 7)
				p := filepath.Join(path, file)
				if err := os.Remove(p); err != nil {
					t.Fatal(err)
				}
				if err := sp.make(p); err != nil {
					t.Fatal(err)
				}
				ck, err := loadWithin(t, Store{}, path)
				if !errors.Is(err, ErrCorrupt) || ck != nil {
					t.Fatalf("got (%v, %v); want (nil, ErrCorrupt)", ck != nil, err)
				}
			})
		}
	}
}

// TestInspectRefusesSpecialFiles: Inspect of a lone file that is a FIFO or a link to /dev/zero returns
// at once with ErrCorrupt.
func TestInspectRefusesSpecialFiles(t *testing.T) {
	for _, sp := range specialFiles {
		t.Run(sp.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), weightsFile)
			if err := sp.make(p); err != nil {
				t.Fatal(err)
			}
			var err error
			within(t, "Inspect("+p+")", func() { _, err = Inspect(p) })
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("got %v; want ErrCorrupt", err)
			}
		})
	}
}

// TestLoadRefusesOversizedFiles: a file larger than the manifest lists, or than any file of its kind may
// be (a 1 TiB sparse file, listed as such in a manifest whose checksums agree), is refused from its size
// alone, before it is read.
func TestLoadRefusesOversizedFiles(t *testing.T) {
	const huge = 1 << 40
	for _, tc := range []struct {
		name   string
		file   string
		listed bool // the manifest lists the huge size (else the true one)
	}{
		{"weights larger than listed", weightsFile, false},
		{"weights listed huge", weightsFile, true},
		{"optimizer listed huge", optimizerFile, true},
		{"state listed huge", stateFile, true},
		{"config listed huge", configFile, true},
		{"manifest huge", manifestFile, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := mustSave(t, t.TempDir(), 7)
			if tc.listed {
				listed := listFiles(t, path)
				for i := range listed {
					if listed[i].Name == tc.file {
						listed[i].Size = huge
					}
				}
				writeBytes(t, filepath.Join(path, manifestFile), encodeManifest(7, listed))
			}
			if err := os.Truncate(filepath.Join(path, tc.file), huge); err != nil {
				t.Skipf("no sparse file of 1 TiB here: %v", err)
			}
			var ck *Checkpoint
			var err error
			if n := bytesAllocated(func() { ck, err = loadWithin(t, Store{}, path) }); n > 1<<20 {
				t.Errorf("Load allocated %d bytes; want at most 1 MiB", n)
			}
			if !errors.Is(err, ErrCorrupt) || ck != nil {
				t.Fatalf("got (%v, %v); want (nil, ErrCorrupt)", ck != nil, err)
			}
		})
	}
}

// listFiles returns the manifest entries of the payload files of the checkpoint directory dir as they
// are now, for a test to alter before it writes them as a new MANIFEST.
func listFiles(t *testing.T, dir string) []listedFile {
	t.Helper()
	var listed []listedFile
	for _, name := range payloadFiles {
		listed = append(listed, describe(name, readBytes(t, filepath.Join(dir, name))))
	}
	return listed
}
