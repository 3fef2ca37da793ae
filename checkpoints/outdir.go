package checkpoints

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"slices"
)

// Dirs returns every checkpoint-<n> directory of Dir, oldest first, whether or not it is complete or
// verifies: the directories a run owns, which List filters down to the loadable ones. A missing Dir holds none.
func (s Store) Dirs() ([]Entry, error) {
	dirents, err := orOS(s.FS).ReadDir(s.Dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("checkpoints: list %s: %w", s.Dir, err)
	}
	var out []Entry
	for _, d := range dirents {
		if step, ok := parseDirName(d.Name()); ok && d.IsDir() {
			out = append(out, Entry{Step: step, Path: filepath.Join(s.Dir, d.Name())})
		}
	}
	slices.SortFunc(out, func(a, b Entry) int { return a.Step - b.Step })
	return out, nil
}

// SetAside moves every checkpoint directory of Dir newer than step (complete, damaged or unfinished) into
// the folder Dir/aside, which it creates, and returns their new paths. A run resumed from step makes them
// an abandoned future: left in place, a later Prune would keep them as the newest and delete the run's own
// new checkpoints. They are moved, never deleted, and List no longer sees them.
func (s Store) SetAside(step int, aside string) ([]string, error) {
	dirs, err := s.Dirs()
	if err != nil {
		return nil, err
	}
	fsys, dest := orOS(s.FS), filepath.Join(s.Dir, aside)
	var moved []string
	for _, e := range dirs {
		if e.Step <= step {
			continue
		}
		if len(moved) == 0 {
			if err := fsys.MkdirAll(dest); err != nil {
				return nil, fmt.Errorf("checkpoints: create %s: %w", dest, err)
			}
		}
		to := filepath.Join(dest, filepath.Base(e.Path))
		if err := fsys.Rename(e.Path, to); err != nil {
			return moved, fmt.Errorf("checkpoints: move %s to %s: %w", e.Path, to, err)
		}
		moved = append(moved, to)
	}
	if len(moved) == 0 {
		return nil, nil
	}
	return moved, errors.Join(syncDir(fsys, dest), syncDir(fsys, s.Dir))
}

// RemoveAll removes every checkpoint directory of Dir (complete, damaged or unfinished), each renamed to a
// temporary name first as Prune does, and returns the removed paths. Nothing else in Dir is touched.
func (s Store) RemoveAll() ([]string, error) {
	dirs, err := s.Dirs()
	if err != nil {
		return nil, err
	}
	var removed []string
	for _, e := range dirs {
		if err := s.remove(e.Path); err != nil {
			return removed, err
		}
		removed = append(removed, e.Path)
	}
	return removed, nil
}

// WriteFile replaces Dir/name with data atomically (temporary file, sync, rename, sync of Dir): a crash or a
// full disk leaves the old file or the new one, never a truncated one.
func (s Store) WriteFile(name string, data []byte) error {
	fsys := orOS(s.FS)
	if err := fsys.MkdirAll(s.Dir); err != nil {
		return fmt.Errorf("checkpoints: create %s: %w", s.Dir, err)
	}
	return writeFileAtomic(fsys, filepath.Join(s.Dir, name), data)
}

// syncDir flushes the entries of the directory at path.
func syncDir(fsys FS, path string) error {
	if err := fsys.SyncDir(path); err != nil {
		return fmt.Errorf("checkpoints: sync directory %s: %w", path, err)
	}
	return nil
}
