package checkpoints

import (
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path/filepath"

	"github.com/flextrain/flextrain/safetensors"
)

// FileInfo describes one file of a checkpoint as Load and Inspect found it.
type FileInfo struct {
	Name    string // file name inside the checkpoint directory
	Size    int64  // bytes on disk
	RawSize int64  // bytes of payload after decompression (Size for uncompressed files)
}

// Load reads the checkpoint directory at path and verifies all of it before returning anything:
// MANIFEST (magic, version, checksum, the list of files, the step against the directory name), then for
// each file its frame (magic, version, checksum, lengths), its size and SHA-256 against the manifest,
// and the structure of its safetensors payload. A damaged checkpoint is ErrCorrupt, a file of another
// format version ErrVersion, a missing path or a directory without MANIFEST ErrNotFound; each error names
// the file. Load never returns tensors from a file that failed a check. Load uses s.FS, not s.Dir.
func (s Store) Load(path string) (*Checkpoint, error) {
	ck, _, err := s.read(path)
	return ck, err
}

// reader reads the files of one checkpoint directory against its manifest.
type reader struct {
	fsys  FS
	dir   string
	m     *manifest
	files []FileInfo
}

// read loads and verifies the checkpoint at path, also returning what it found about each file.
func (s Store) read(path string) (*Checkpoint, []FileInfo, error) {
	r := &reader{fsys: orOS(s.FS), dir: path}
	m, err := readManifest(r.fsys, path)
	if err != nil {
		return nil, nil, err
	}
	r.m = m
	ck := &Checkpoint{Step: m.Step}
	if ck.Weights, err = r.tensors(weightsFile, kindWeights, s.Limits.limit(kindWeights)); err != nil {
		return nil, r.files, err
	}
	if ck.Optimizer, err = r.tensors(optimizerFile, kindOptimizer, s.Limits.limit(kindOptimizer)); err != nil {
		return nil, r.files, err
	}
	if ck.State, err = r.plain(stateFile); err != nil {
		return nil, r.files, err
	}
	if !json.Valid(ck.State) {
		return nil, r.files, fmt.Errorf("checkpoints: load %s: %w: not valid JSON", filepath.Join(path, stateFile), ErrCorrupt)
	}
	if ck.Config, err = r.plain(configFile); err != nil {
		return nil, r.files, err
	}
	return ck, r.files, nil
}

// readManifest reads and verifies the MANIFEST of the checkpoint directory dir, and checks its step
// against the directory's name when that name is checkpoint-<n>.
func readManifest(fsys FS, dir string) (*manifest, error) {
	p := filepath.Join(dir, manifestFile)
	f, size, err := openSized(fsys, p, -1, maxManifest)
	if err != nil {
		if _, serr := fsys.Stat(dir); serr == nil && errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("checkpoints: load %s: %w: no %s, so not a complete checkpoint: %w", dir, ErrNotFound, manifestFile, err)
		}
		return nil, fmt.Errorf("checkpoints: load %s: %w", p, notFound(err))
	}
	defer f.Close()
	m, err := decodeManifest(f, size)
	if err != nil {
		return nil, fmt.Errorf("checkpoints: load %s: %w", p, err)
	}
	if step, ok := parseDirName(filepath.Base(filepath.Clean(dir))); ok && step != m.Step {
		return nil, fmt.Errorf("checkpoints: load %s: %w: manifest is for step %d", p, ErrCorrupt, m.Step)
	}
	return m, nil
}

// notFound adds ErrNotFound to an error that reports a missing file.
func notFound(err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w: %w", ErrNotFound, err)
	}
	return err
}

// read opens the listed file name, checks its size against the manifest and against maxSize before reading
// a byte of it, decodes it with decode while hashing every byte read, and checks that SHA-256 against the
// manifest. It returns the decoded bytes and the size on disk. A missing file is corruption: the manifest
// promised it.
func (r *reader) read(name string, maxSize int64, decode func(io.Reader, int64) ([]byte, error)) ([]byte, int64, error) {
	p := filepath.Join(r.dir, name)
	f, size, err := openSized(r.fsys, p, r.m.entry(name).Size, maxSize)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, 0, fmt.Errorf("checkpoints: load %s: %w: listed in %s but missing", p, ErrCorrupt, manifestFile)
	}
	if err != nil {
		return nil, 0, fmt.Errorf("checkpoints: load %s: %w", p, err)
	}
	defer f.Close()
	sum := sha256.New()
	b, err := decode(io.TeeReader(f, sum), size)
	if err == nil {
		err = r.m.checkSum(name, sum.Sum(nil))
	}
	if err != nil {
		return nil, 0, fmt.Errorf("checkpoints: load %s: %w", p, err)
	}
	return b, size, nil
}

// tensors reads and verifies a framed safetensors file of kind, whose payload may have at most limit
// bytes, and returns its tensors.
func (r *reader) tensors(name, kind string, limit int64) (map[string]safetensors.Tensor, error) {
	raw, size, err := r.read(name, maxFrameSize(limit), func(f io.Reader, size int64) ([]byte, error) {
		return readFrame(f, size, kind, limit)
	})
	if err != nil {
		return nil, err
	}
	st, err := safetensors.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("checkpoints: load %s: %w: %w", filepath.Join(r.dir, name), ErrCorrupt, err)
	}
	r.files = append(r.files, FileInfo{Name: name, Size: size, RawSize: int64(len(raw))})
	return st.Tensors, nil
}

// plain reads an unframed file and verifies it against the manifest.
func (r *reader) plain(name string) ([]byte, error) {
	b, size, err := r.read(name, maxPlainFile, readAll)
	if err != nil {
		return nil, err
	}
	r.files = append(r.files, FileInfo{Name: name, Size: size, RawSize: size})
	return b, nil
}

// ReadConfig reads and verifies only the MANIFEST and config.yaml of the checkpoint at path: what a caller
// needs to learn which model the checkpoint belongs to, and so the Limits of its tensor files, before it
// loads them.
func (s Store) ReadConfig(path string) ([]byte, error) {
	r := &reader{fsys: orOS(s.FS), dir: path}
	m, err := readManifest(r.fsys, path)
	if err != nil {
		return nil, err
	}
	r.m = m
	return r.plain(configFile)
}
