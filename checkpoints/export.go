package checkpoints

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strings"

	"github.com/flextrain/flextrain/safetensors"
)

// WriteSafetensors writes tensors and metadata to path as a plain, uncompressed safetensors file, the
// format inference tools read. The write is atomic (internal/atomicfile): path holds either its old
// content or the complete new file.
func WriteSafetensors(path string, tensors map[string]safetensors.Tensor, metadata map[string]string) error {
	return writeSafetensors(OS, path, tensors, metadata)
}

func writeSafetensors(fsys FS, path string, tensors map[string]safetensors.Tensor, metadata map[string]string) error {
	var buf bytes.Buffer
	if err := safetensors.Write(&buf, &safetensors.File{Metadata: metadata, Tensors: tensors}); err != nil {
		return fmt.Errorf("checkpoints: export %s: %w", path, err)
	}
	return writeFileAtomic(fsys, path, buf.Bytes())
}

// WriteJSON writes v to path as indented JSON with a final newline, atomically; it is meant for the
// config.json that accompanies an export.
func WriteJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("checkpoints: export %s: %w", path, err)
	}
	return writeFileAtomic(OS, path, append(b, '\n'))
}

// Info describes a checkpoint directory or a tensor file, for `flextrain inspect`.
type Info struct {
	Path    string
	Step    int          // the checkpoint's step; -1 for a lone file or an unreadable manifest
	Files   []FileInfo   // the files that verified, in the order they were read
	Tensors []TensorInfo // weights first, then optimizer state, each sorted by name
}

// TensorInfo describes one stored tensor.
type TensorInfo struct {
	Group string // "weights" or "optimizer" in a checkpoint, the file name for a lone file
	Name  string
	DType safetensors.DType
	Shape []int
	Bytes int // size of the raw data
}

// StoredBytes is the size on disk of the files that verified.
func (i Info) StoredBytes() int64 { return i.sum(func(f FileInfo) int64 { return f.Size }) }

// RawBytes is the size of their payloads after decompression.
func (i Info) RawBytes() int64 { return i.sum(func(f FileInfo) int64 { return f.RawSize }) }

// Ratio is the compression ratio RawBytes/StoredBytes (0 when nothing verified).
func (i Info) Ratio() float64 {
	if i.StoredBytes() == 0 {
		return 0
	}
	return float64(i.RawBytes()) / float64(i.StoredBytes())
}

func (i Info) sum(size func(FileInfo) int64) int64 {
	var n int64
	for _, f := range i.Files {
		n += size(f)
	}
	return n
}

// Inspect describes the checkpoint directory or file at path on the real file system (see Store.Inspect).
func Inspect(path string) (Info, error) { return Store{}.Inspect(path) }

// Inspect describes the checkpoint directory, the checkpoint file (weights.st.zst, optimizer.st.zst)
// or the plain safetensors file at path, verifying it as Load does. A nil error means everything
// verified. Otherwise Inspect returns what it could read (the step when the manifest verified, the
// files that verified) together with the error, which wraps ErrCorrupt, ErrVersion or ErrNotFound and
// names the file, so a caller can print both. Inspect reads through s.FS, not s.Dir.
func (s Store) Inspect(path string) (Info, error) {
	st, err := orOS(s.FS).Stat(path)
	if err != nil {
		return Info{Path: path, Step: -1}, fmt.Errorf("checkpoints: inspect %s: %w", path, notFound(err))
	}
	if st.IsDir() {
		return s.inspectDir(path)
	}
	return s.inspectFile(path)
}

// inspectDir describes a checkpoint directory.
func (s Store) inspectDir(path string) (Info, error) {
	info := Info{Path: path, Step: -1}
	if m, err := readManifest(orOS(s.FS), path); err == nil {
		info.Step = m.Step
	}
	ck, files, err := s.read(path)
	info.Files = files
	if ck != nil {
		info.Tensors = append(describeTensors("weights", ck.Weights), describeTensors("optimizer", ck.Optimizer)...)
	}
	return info, err
}

// inspectFile describes a lone framed checkpoint file or a plain safetensors file.
func (s Store) inspectFile(path string) (Info, error) {
	info := Info{Path: path, Step: -1}
	largest := max(s.Limits.limit(kindWeights), s.Limits.limit(kindOptimizer))
	f, size, err := openSized(orOS(s.FS), path, -1, maxFrameSize(largest))
	if err != nil {
		return info, fmt.Errorf("checkpoints: inspect %s: %w", path, err)
	}
	defer f.Close()
	raw, err := s.readLone(f, size)
	if err != nil {
		return info, fmt.Errorf("checkpoints: inspect %s: %w", path, err)
	}
	st, err := safetensors.Parse(raw)
	if err != nil {
		return info, fmt.Errorf("checkpoints: inspect %s: %w: %w", path, ErrCorrupt, err)
	}
	name := filepath.Base(path)
	info.Files = []FileInfo{{Name: name, Size: size, RawSize: int64(len(raw))}}
	info.Tensors = describeTensors(name, st.Tensors)
	return info, nil
}

// readLone reads a lone tensor file of size bytes within s.Limits: a frame, of the weights or the
// optimizer kind as its kind field says, or a plain safetensors file, bounded as weights.
func (s Store) readLone(f io.Reader, size int64) ([]byte, error) {
	br := bufio.NewReader(f)
	head, _ := br.Peek(16) // a shorter file gives fewer bytes, which the readers below report
	if !bytes.HasPrefix(head, []byte(magic)) {
		if limit := s.Limits.limit(kindWeights); size > limit {
			return nil, fmt.Errorf("%w: %d bytes of safetensors, the limit is %d", ErrCorrupt, size, limit)
		}
		return readAll(br, size)
	}
	kind := kindWeights
	if len(head) == 16 && string(head[12:]) == kindOptimizer {
		kind = kindOptimizer
	}
	return readFrame(br, size, kind, s.Limits.limit(kind))
}

// describeTensors lists tensors sorted by name under group.
func describeTensors(group string, tensors map[string]safetensors.Tensor) []TensorInfo {
	out := make([]TensorInfo, 0, len(tensors))
	for name, t := range tensors {
		out = append(out, TensorInfo{Group: group, Name: name, DType: t.DType, Shape: t.Shape, Bytes: len(t.Data)})
	}
	slices.SortFunc(out, func(a, b TensorInfo) int { return strings.Compare(a.Name, b.Name) })
	return out
}
