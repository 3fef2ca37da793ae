package checkpoints

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/klauspost/compress/zstd"

	"github.com/flextrain/flextrain/safetensors"
)

// namedFile is one file of a checkpoint directory, encoded and ready to write.
type namedFile struct {
	name string
	data []byte
}

// Save writes ck as Dir/checkpoint-<ck.Step> and returns that path. Files go into a temporary
// directory next to it (each written, synced and closed), the directory is synced, renamed to the final
// name, and Dir is synced. A checkpoint of the same step is replaced: it is moved aside first and
// removed once the new one is durable. Stale temporary directories of earlier crashed saves
// (checkpoint-<n>.tmp-*) are removed first; nothing else in Dir is touched.
//
// On an error the temporary directory is removed, earlier checkpoints are untouched, no checkpoint of
// ck.Step is listed (unless one existed before), and the error wraps the cause (so errors.Is(err,
// syscall.ENOSPC) works) and names the path.
func (s Store) Save(ck *Checkpoint) (string, error) {
	files, err := encodeCheckpoint(ck, s.Limits)
	if err != nil {
		return "", err
	}
	fsys := orOS(s.FS)
	if err := fsys.MkdirAll(s.Dir); err != nil {
		return "", fmt.Errorf("checkpoints: create %s: %w", s.Dir, err)
	}
	if err := s.removeStale(); err != nil {
		return "", err
	}
	final := filepath.Join(s.Dir, dirName(ck.Step))
	tmp := final + tmpInfix + randomSuffix()
	if err := s.writeDir(tmp, files); err != nil {
		return "", errors.Join(err, removeTemp(fsys, tmp))
	}
	if err := s.commit(tmp, final); err != nil {
		return "", errors.Join(err, removeTemp(fsys, tmp))
	}
	return final, nil
}

// encodeCheckpoint validates ck and encodes its files in write order, MANIFEST last; a tensor file may not
// exceed its limit.
func encodeCheckpoint(ck *Checkpoint, limits Limits) ([]namedFile, error) {
	if err := validate(ck); err != nil {
		return nil, err
	}
	enc := newEncoder()
	defer enc.Close()
	weights, err := encodeTensors(kindWeights, ck.Weights, enc, limits.limit(kindWeights))
	if err != nil {
		return nil, fmt.Errorf("checkpoints: save step %d: %s: %w", ck.Step, weightsFile, err)
	}
	optimizer, err := encodeTensors(kindOptimizer, ck.Optimizer, enc, limits.limit(kindOptimizer))
	if err != nil {
		return nil, fmt.Errorf("checkpoints: save step %d: %s: %w", ck.Step, optimizerFile, err)
	}
	files := []namedFile{{weightsFile, weights}, {optimizerFile, optimizer}, {stateFile, ck.State}, {configFile, ck.Config}}
	listed := make([]listedFile, len(files))
	for i, f := range files {
		listed[i] = describe(f.name, f.data)
	}
	return append(files, namedFile{manifestFile, encodeManifest(ck.Step, listed)}), nil
}

// validate refuses a checkpoint that cannot be written, or that Load would refuse to read.
func validate(ck *Checkpoint) error {
	switch {
	case ck == nil:
		return errors.New("checkpoints: save: nil checkpoint")
	case ck.Step < 0:
		return fmt.Errorf("checkpoints: save: negative step %d", ck.Step)
	case !json.Valid(ck.State):
		return fmt.Errorf("checkpoints: save step %d: trainer state is not valid JSON", ck.Step)
	case len(ck.State) > maxPlainFile || len(ck.Config) > maxPlainFile:
		return fmt.Errorf("checkpoints: save step %d: trainer state (%d bytes) or config (%d bytes) larger than the %d bytes Load reads",
			ck.Step, len(ck.State), len(ck.Config), maxPlainFile)
	}
	return nil
}

// encodeTensors returns the frame of kind holding tensors as compressed safetensors, refusing a payload
// larger than limit, which Load would refuse.
func encodeTensors(kind string, tensors map[string]safetensors.Tensor, enc *zstd.Encoder, limit int64) ([]byte, error) {
	size := 1024
	for name, t := range tensors {
		size += len(t.Data) + len(name) + 64
	}
	buf := bytes.NewBuffer(make([]byte, 0, size))
	if err := safetensors.Write(buf, &safetensors.File{Tensors: tensors}); err != nil {
		return nil, err
	}
	if int64(buf.Len()) > limit {
		return nil, fmt.Errorf("payload of %d bytes is larger than the limit of %d bytes Load reads", buf.Len(), limit)
	}
	return encodeFrame(kind, buf.Bytes(), enc), nil
}

// writeDir creates the temporary directory tmp, writes every file durably, then syncs tmp.
func (s Store) writeDir(tmp string, files []namedFile) error {
	fsys := orOS(s.FS)
	if err := fsys.Mkdir(tmp); err != nil {
		return fmt.Errorf("checkpoints: create %s: %w", tmp, err)
	}
	for _, f := range files {
		if err := writeFile(fsys, filepath.Join(tmp, f.name), f.data); err != nil {
			return err
		}
	}
	if err := fsys.SyncDir(tmp); err != nil {
		return fmt.Errorf("checkpoints: sync directory %s: %w", tmp, err)
	}
	return nil
}

// commit renames the complete directory tmp to final and syncs Dir, moving an existing final aside
// first. On an error it puts things back as they were, as far as the file system lets it.
func (s Store) commit(tmp, final string) error {
	fsys := orOS(s.FS)
	aside, err := s.moveAside(final)
	if err != nil {
		return err
	}
	if err := fsys.Rename(tmp, final); err != nil {
		err = fmt.Errorf("checkpoints: rename %s to %s: %w", tmp, final, err)
		return errors.Join(err, s.restore(aside, final))
	}
	if err := fsys.SyncDir(s.Dir); err != nil {
		err = fmt.Errorf("checkpoints: sync directory %s: %w", s.Dir, err)
		if uerr := fsys.Rename(final, tmp); uerr != nil {
			return errors.Join(err, fmt.Errorf("checkpoints: undo rename of %s: %w", final, uerr))
		}
		return errors.Join(err, s.restore(aside, final))
	}
	if aside != "" {
		// The new checkpoint is durable; if this removal fails, the next Save removes the stale directory.
		fsys.RemoveAll(aside)
	}
	return nil
}

// moveAside renames an existing final directory to a temporary name and returns that name, or "" when
// final does not exist. A file of that name is not Save's to replace: that is an error.
func (s Store) moveAside(final string) (string, error) {
	fsys := orOS(s.FS)
	st, err := fsys.Stat(final)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("checkpoints: stat %s: %w", final, err)
	}
	if !st.IsDir() {
		return "", fmt.Errorf("checkpoints: save %s: exists and is not a checkpoint directory; not replacing it", final)
	}
	aside := final + tmpInfix + randomSuffix()
	if err := fsys.Rename(final, aside); err != nil {
		return "", fmt.Errorf("checkpoints: rename %s to %s: %w", final, aside, err)
	}
	return aside, nil
}

// restore moves a directory set aside by moveAside back to final; it does nothing when aside is "".
func (s Store) restore(aside, final string) error {
	if aside == "" {
		return nil
	}
	if err := orOS(s.FS).Rename(aside, final); err != nil {
		return fmt.Errorf("checkpoints: restore %s to %s: %w", aside, final, err)
	}
	return nil
}

// removeStale removes the temporary directories of earlier saves that crashed (checkpoint-<n>.tmp-*).
// It touches nothing else.
func (s Store) removeStale() error {
	fsys := orOS(s.FS)
	entries, err := fsys.ReadDir(s.Dir)
	if err != nil {
		return fmt.Errorf("checkpoints: list %s: %w", s.Dir, err)
	}
	for _, e := range entries {
		if e.IsDir() && staleName.MatchString(e.Name()) {
			if err := fsys.RemoveAll(filepath.Join(s.Dir, e.Name())); err != nil {
				return fmt.Errorf("checkpoints: remove stale %s: %w", filepath.Join(s.Dir, e.Name()), err)
			}
		}
	}
	return nil
}

// staleName matches the temporary directory names Save and Prune create.
var staleName = regexp.MustCompile(`^checkpoint-(0|[1-9][0-9]*)\.tmp-[0-9a-f]+$`)

// dirName is the directory name of the checkpoint of step.
func dirName(step int) string { return "checkpoint-" + strconv.Itoa(step) }

// parseDirName returns the step of a checkpoint directory name, in its one canonical spelling only
// (checkpoint-7, not checkpoint-07), so that no two names claim one step.
func parseDirName(name string) (int, bool) {
	digits, ok := strings.CutPrefix(name, "checkpoint-")
	if !ok {
		return 0, false
	}
	step, err := strconv.Atoi(digits)
	if err != nil || step < 0 || strconv.Itoa(step) != digits {
		return 0, false
	}
	return step, true
}
