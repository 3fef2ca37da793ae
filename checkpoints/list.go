package checkpoints

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"slices"
)

// List returns the complete checkpoints in Dir, oldest first: directories named checkpoint-<n> whose
// MANIFEST verifies and names step n. Temporary directories, empty or incomplete directories and other
// files are ignored, and a missing Dir holds none. List reads only the manifests; Latest verifies all.
func (s Store) List() ([]Entry, error) {
	list, _, err := s.scan()
	return list, err
}

// scan is List, also returning an error for each checkpoint-<n> directory whose MANIFEST exists but
// fails to verify: unlike a missing manifest (a foreign or unfinished directory; Save never leaves one
// under a final name), that is a damaged checkpoint or one of a newer format, and resuming must say so.
func (s Store) scan() ([]Entry, []error, error) {
	fsys := orOS(s.FS)
	dirents, err := fsys.ReadDir(s.Dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("checkpoints: list %s: %w", s.Dir, err)
	}
	var list []Entry
	var rejected []error
	for _, d := range dirents {
		step, ok := parseDirName(d.Name())
		if !ok || !d.IsDir() {
			continue
		}
		p := filepath.Join(s.Dir, d.Name())
		if _, err := readManifest(fsys, p); err == nil {
			list = append(list, Entry{Step: step, Path: p})
		} else if !errors.Is(err, ErrNotFound) {
			rejected = append(rejected, err)
		}
	}
	slices.SortFunc(list, func(a, b Entry) int { return a.Step - b.Step })
	return list, rejected, nil
}

// Latest returns the newest checkpoint in Dir that verifies completely (as Load does). It is
// ErrNotFound when Dir holds nothing that looks like a checkpoint, and wraps the errors of the
// checkpoints (ErrCorrupt or ErrVersion) when none of them verifies.
func (s Store) Latest() (Entry, error) {
	e, _, err := s.latest()
	return e, err
}

// latest is Latest, also returning one warning for each checkpoint that failed to verify: a newer one
// skipped, or one whose manifest is damaged or of another format version. It is ErrNotFound only when
// Dir holds nothing that looks like a checkpoint.
func (s Store) latest() (Entry, []string, error) {
	list, rejected, err := s.scan()
	if err != nil {
		return Entry{}, nil, err
	}
	var warnings []string
	for _, err := range rejected {
		warnings = append(warnings, fmt.Sprintf("ignoring a checkpoint that does not verify: %v", err))
	}
	for i := len(list) - 1; i >= 0; i-- {
		_, err := s.Load(list[i].Path)
		if err == nil {
			return list[i], warnings, nil
		}
		rejected = append(rejected, err)
		warnings = append(warnings, fmt.Sprintf("skipping checkpoint %s: %v", list[i].Path, err))
	}
	if len(rejected) == 0 {
		return Entry{}, nil, fmt.Errorf("checkpoints: %s: %w: no complete checkpoint", s.Dir, ErrNotFound)
	}
	return Entry{}, warnings, fmt.Errorf("checkpoints: %s: none of its %d checkpoints verifies: %w",
		s.Dir, len(rejected), errors.Join(rejected...))
}

// Resolve turns the value of --resume into the checkpoint directory to load, or "" to start fresh:
//
//   - "none" or "": start fresh.
//   - "auto": the newest checkpoint in Dir that verifies. A newer one that fails is skipped with a
//     warning that names the bad file and the reason, so the run falls back to the one before. A Dir
//     with nothing that looks like a checkpoint starts fresh; one whose checkpoints all fail is an
//     error wrapping their errors (ErrCorrupt, or ErrVersion for a newer format), so a run never
//     silently starts over beside damaged checkpoints.
//   - anything else: the path of a checkpoint directory, which must verify; if it does not, the error
//     is Load's (ErrCorrupt, ErrVersion or ErrNotFound, with the path and the reason).
func (s Store) Resolve(spec string) (path string, warnings []string, err error) {
	switch spec {
	case "", "none":
		return "", nil, nil
	case "auto":
		e, warnings, err := s.latest()
		if errors.Is(err, ErrNotFound) {
			return "", warnings, nil
		}
		return e.Path, warnings, err
	}
	if _, err := s.Load(spec); err != nil {
		return "", nil, err
	}
	return spec, nil, nil
}

// Prune removes complete checkpoints from Dir except the newest keep and the protected steps, and
// returns the removed paths. Callers protect the step just written and the best step. keep < 2 is
// refused, so a corrupt newest checkpoint always has one to fall back to. Only directories List returns
// are removed: foreign files and temporary or incomplete directories are never touched. Each one is
// renamed to a temporary name before it is removed, so a crash mid-removal never leaves a partial
// checkpoint that looks complete (the next Save removes the leftover).
func (s Store) Prune(keep int, protect ...int) ([]string, error) {
	if keep < 2 {
		return nil, fmt.Errorf("checkpoints: prune %s: keep %d; keep at least 2 checkpoints", s.Dir, keep)
	}
	list, err := s.List()
	if err != nil {
		return nil, err
	}
	var removed []string
	for i, e := range list {
		if i >= len(list)-keep || slices.Contains(protect, e.Step) {
			continue
		}
		if err := s.remove(e.Path); err != nil {
			return removed, err
		}
		removed = append(removed, e.Path)
	}
	return removed, nil
}

// remove deletes the checkpoint directory at path: rename to a temporary name, then remove.
func (s Store) remove(path string) error {
	fsys := orOS(s.FS)
	tmp := path + tmpInfix + randomSuffix()
	if err := fsys.Rename(path, tmp); err != nil {
		return fmt.Errorf("checkpoints: prune %s: %w", path, err)
	}
	if err := fsys.RemoveAll(tmp); err != nil {
		return fmt.Errorf("checkpoints: prune %s: %w", tmp, err)
	}
	return nil
}
