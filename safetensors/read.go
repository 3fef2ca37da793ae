package safetensors

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"

	"github.com/flextrain/flextrain/internal/fileio"
)

// IndexName is the file name Hugging Face gives the index of a sharded checkpoint.
const IndexName = "model.safetensors.index.json"

// ReadFile reads and parses a whole safetensors file: ReadFileLimit with no limit but the memory's.
func ReadFile(path string) (*File, error) { return ReadFileLimit(path, 0) }

// ReadFileLimit reads and parses a whole safetensors file of at most limit bytes (limit ≤ 0: no limit). A
// caller that knows what the file should hold (model.LoadWeights, from the model's shapes) passes a bound
// derived from it, so that a huge file, even a sparse one that costs no disk, is refused before it is read.
// Only a regular file is opened (internal/fileio: a FIFO, a device such as /dev/zero or a directory is
// refused at once, without blocking), and its size is checked against limit, and its claimed header length
// against the size and MaxHeaderSize, before anything is allocated. A file over limit gives an error
// wrapping ErrTooLarge; every error names path.
func ReadFileLimit(path string, limit int64) (*File, error) {
	fh, err := fileio.Open(path)
	if err != nil {
		return nil, fmt.Errorf("safetensors: read %s: %w", path, err)
	}
	defer fh.Close()
	f, _, err := readOpen(fh, normLimit(limit))
	if err != nil {
		return nil, fmt.Errorf("safetensors: read %s: %w", path, err)
	}
	return f, nil
}

// normLimit turns a caller's limit (≤ 0: none) into a positive byte count.
func normLimit(limit int64) int64 {
	if limit <= 0 {
		return math.MaxInt64
	}
	return limit
}

// readOpen reads a regular file opened by fileio (stat, check the size and the header length, then map it
// (fileio.Map) and parse its header) and returns it with its size. limit is positive. The tensors alias the
// mapping, which lives as long as the process: only the pages a caller touches are read.
func readOpen(fh *os.File, limit int64) (*File, int64, error) {
	size, err := statSize(fh, limit)
	if err != nil {
		return nil, 0, err
	}
	var head [8]byte
	if _, err := io.ReadFull(fh, head[:]); err != nil {
		return nil, 0, err
	}
	if err := checkHeaderLen(binary.LittleEndian.Uint64(head[:]), size); err != nil {
		return nil, 0, err
	}
	b, release, err := fileio.Map(fh, size)
	if err != nil {
		return nil, 0, err
	}
	f, err := parse(b)
	if err != nil {
		release()
	}
	return f, size, err
}

// statSize returns the size of the open file, refusing one over limit, one too short to hold the header
// length, and one too large for memory. Only these bytes are read: a file that grows afterwards is cut.
func statSize(fh *os.File, limit int64) (int64, error) {
	st, err := fh.Stat()
	if err != nil {
		return 0, err
	}
	size := st.Size()
	switch {
	case size > limit:
		return 0, fmt.Errorf("%w: file of %d bytes, the limit is %d", ErrTooLarge, size, limit)
	case size < 8:
		return 0, formatErrorf("file of %d bytes is shorter than the 8-byte header length", size)
	case uint64(size) > math.MaxInt:
		return 0, fmt.Errorf("file of %d bytes is too large to read into memory", size)
	}
	return size, nil
}

// index is a decoded model.safetensors.index.json.
type index struct {
	metadata  map[string]string
	weightMap map[string]string // tensor name -> shard file, relative to the index's folder
}

// ReadSharded reads a sharded checkpoint: ReadShardedLimit with no limit on the shards but the memory's.
func ReadSharded(indexPath string) (*File, error) { return ReadShardedLimit(indexPath, 0) }

// ReadShardedLimit reads a sharded checkpoint from its index (model.safetensors.index.json, as Hugging Face
// writes it: {"metadata": {...}, "weight_map": {name: shard}}) and the shards beside it, which together may
// hold at most limit bytes (limit ≤ 0: no limit); the index itself may hold MaxHeaderSize. Every shard is
// opened and its size summed before any is read, so shards too large together are refused (an error wrapping
// ErrTooLarge) before anything is allocated for them; each is then read within what the others left. Only
// regular files are opened (see ReadFileLimit). Every shard path must stay inside the index's folder
// (checked lexically and again, symbolic links included, by os.Root). Each tensor must be in the shard the
// map names, and each shard tensor must be in the map. The index's metadata (non-string values kept as their
// JSON text, e.g. total_size) comes first; keys only the shards have are added from the shards in sorted
// file order.
func ReadShardedLimit(indexPath string, limit int64) (*File, error) {
	idx, err := readIndex(indexPath)
	if err != nil {
		return nil, fmt.Errorf("safetensors: read index %s: %w", indexPath, err)
	}
	f, err := readShards(filepath.Dir(indexPath), idx, normLimit(limit))
	if err != nil {
		return nil, fmt.Errorf("safetensors: read index %s: %w", indexPath, err)
	}
	return f, nil
}

// readIndex reads and decodes the index file, a regular file of at most MaxHeaderSize bytes.
func readIndex(path string) (*index, error) {
	b, err := fileio.ReadFile(path, MaxHeaderSize)
	if errors.Is(err, fileio.ErrTooLarge) {
		return nil, fmt.Errorf("%w: index: %w", ErrFormat, err)
	}
	if err != nil {
		return nil, err
	}
	return decodeIndex(b)
}

// decodeIndex walks the index JSON, refusing repeated keys, unknown top-level keys and non-string shard names.
func decodeIndex(b []byte) (*index, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	idx := &index{metadata: map[string]string{}}
	err := walkObject(dec, "index", func(key string) error {
		switch key {
		case "metadata":
			return decodeIndexMetadata(dec, idx.metadata)
		case "weight_map":
			idx.weightMap = map[string]string{}
			return walkObject(dec, "weight_map", func(name string) error {
				shard, err := stringToken(dec, "weight_map tensor", name)
				idx.weightMap[name] = shard
				return err
			})
		}
		return formatErrorf("index: unknown key %q", key)
	})
	if err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, formatErrorf("index: data after the JSON object")
	}
	if len(idx.weightMap) == 0 {
		return nil, formatErrorf("index: no weight_map, or an empty one")
	}
	return idx, nil
}

// decodeIndexMetadata keeps string values as they are and any other JSON value as its compact text.
func decodeIndexMetadata(dec *json.Decoder, meta map[string]string) error {
	return walkObject(dec, "index metadata", func(key string) error {
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return formatErrorf("index metadata %q: invalid JSON: %v", key, err)
		}
		s, err := metadataText(raw)
		if err != nil {
			return formatErrorf("index metadata %q: invalid JSON: %v", key, err)
		}
		meta[key] = s
		return nil
	})
}

// metadataText is a JSON value's string, or, for any other value, its compact text (its text itself when
// it has no white space to remove).
func metadataText(raw json.RawMessage) (string, error) {
	if raw[0] == '"' {
		var s string
		err := json.Unmarshal(raw, &s)
		return s, err
	}
	if !bytes.ContainsAny(raw, " \t\r\n") {
		return string(raw), nil
	}
	var buf bytes.Buffer
	err := json.Compact(&buf, raw)
	return buf.String(), err
}

// shards lists the distinct shard files of the index, sorted.
func (idx *index) shards() []string {
	return slices.Compact(slices.Sorted(maps.Values(idx.weightMap)))
}

// readShards reads every shard through an os.Root on dir, so no path can leave it, and merges them: first
// the shards' sizes together against limit (positive), then each shard within the bytes the others left.
func readShards(dir string, idx *index, limit int64) (*File, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, err
	}
	defer root.Close()
	shards := idx.shards()
	if err := checkShardSizes(root, shards, limit); err != nil {
		return nil, err
	}
	out := &File{Metadata: idx.metadata, Tensors: map[string]Tensor{}}
	for _, shard := range shards {
		size, err := readShard(root, shard, idx, out, limit)
		if err != nil {
			return nil, fmt.Errorf("shard %s: %w", shard, err)
		}
		limit -= size
	}
	return out, checkAllFound(idx, out)
}

// checkShardSizes opens each shard (a local path naming a regular file) and refuses the lot when their
// sizes add up to more than limit.
func checkShardSizes(root *os.Root, shards []string, limit int64) error {
	var total int64
	for _, shard := range shards {
		size, err := shardSize(root, shard)
		if err != nil {
			return fmt.Errorf("shard %s: %w", shard, err)
		}
		if total += size; total > limit || total < 0 {
			return fmt.Errorf("%w: the %d shards hold more than %d bytes together", ErrTooLarge, len(shards), limit)
		}
	}
	return nil
}

// shardSize opens one shard and returns its size.
func shardSize(root *os.Root, shard string) (int64, error) {
	fh, err := openShard(root, shard)
	if err != nil {
		return 0, err
	}
	defer fh.Close()
	st, err := fh.Stat()
	if err != nil {
		return 0, err
	}
	return st.Size(), nil
}

// openShard opens a shard whose path stays inside root, if it is a regular file.
func openShard(root *os.Root, shard string) (*os.File, error) {
	if !filepath.IsLocal(shard) {
		return nil, formatErrorf("shard path %q leaves the index's folder", shard)
	}
	return fileio.OpenIn(root, shard)
}

// readShard reads one shard of at most limit bytes into out, requiring each of its tensors to be mapped to
// it, and returns its size.
func readShard(root *os.Root, shard string, idx *index, out *File, limit int64) (int64, error) {
	fh, err := openShard(root, shard)
	if err != nil {
		return 0, err
	}
	defer fh.Close()
	f, size, err := readOpen(fh, limit)
	if err != nil {
		return 0, err
	}
	return size, merge(f, shard, idx, out)
}

// merge adds the tensors of shard f to out, requiring each to be mapped to shard, and the metadata keys out
// lacks.
func merge(f *File, shard string, idx *index, out *File) error {
	for _, name := range f.Names() {
		if mapped, ok := idx.weightMap[name]; !ok {
			return formatErrorf("tensor %q is in this shard but not in the weight_map", name)
		} else if mapped != shard {
			return formatErrorf("tensor %q is in this shard but the weight_map puts it in %s", name, mapped)
		}
		out.Tensors[name] = f.Tensors[name]
	}
	for k, v := range f.Metadata {
		if _, ok := out.Metadata[k]; !ok {
			out.Metadata[k] = v
		}
	}
	return nil
}

// checkAllFound requires every tensor of the weight_map to have been found in its shard.
func checkAllFound(idx *index, f *File) error {
	for _, name := range slices.Sorted(maps.Keys(idx.weightMap)) {
		if _, ok := f.Tensors[name]; !ok {
			return formatErrorf("tensor %q: the weight_map puts it in %s, which lacks it", name, idx.weightMap[name])
		}
	}
	return nil
}
