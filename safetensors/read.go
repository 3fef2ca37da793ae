package safetensors

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
)

// IndexName is the file name Hugging Face gives the index of a sharded checkpoint.
const IndexName = "model.safetensors.index.json"

// ReadFile reads and parses a whole safetensors file. It checks the claimed header length against the
// file's size and MaxHeaderSize before it allocates anything, so a crafted length cannot exhaust memory.
func ReadFile(path string) (*File, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("safetensors: read %s: %w", path, err)
	}
	defer fh.Close()
	f, err := readOpen(fh)
	if err != nil {
		return nil, fmt.Errorf("safetensors: read %s: %w", path, err)
	}
	return f, nil
}

// readOpen reads an open file: stat, check the header length, then read it all and parse it.
func readOpen(fh *os.File) (*File, error) {
	st, err := fh.Stat()
	if err != nil {
		return nil, err
	}
	size := st.Size()
	switch {
	case !st.Mode().IsRegular():
		return nil, fmt.Errorf("not a regular file (%v)", st.Mode().Type())
	case size < 8:
		return nil, formatErrorf("file of %d bytes is shorter than the 8-byte header length", size)
	case uint64(size) > math.MaxInt:
		return nil, fmt.Errorf("file of %d bytes is too large to read into memory", size)
	}
	var head [8]byte
	if _, err := io.ReadFull(fh, head[:]); err != nil {
		return nil, err
	}
	if err := checkHeaderLen(binary.LittleEndian.Uint64(head[:]), size); err != nil {
		return nil, err
	}
	b := make([]byte, size)
	copy(b, head[:])
	if _, err := io.ReadFull(fh, b[8:]); err != nil {
		return nil, fmt.Errorf("file shrank while reading: %w", err)
	}
	return parse(b)
}

// index is a decoded model.safetensors.index.json.
type index struct {
	metadata  map[string]string
	weightMap map[string]string // tensor name -> shard file, relative to the index's folder
}

// ReadSharded reads a sharded checkpoint from its index (model.safetensors.index.json, as Hugging Face
// writes it: {"metadata": {...}, "weight_map": {name: shard}}) and the shards beside it. Every shard path
// must stay inside the index's folder (checked lexically and again, symbolic links included, by os.Root).
// Each tensor must be in the shard the map names, and each shard tensor must be in the map. The index's
// metadata (non-string values kept as their JSON text, e.g. total_size) comes first; keys only the shards
// have are added from the shards in sorted file order.
func ReadSharded(indexPath string) (*File, error) {
	idx, err := readIndex(indexPath)
	if err != nil {
		return nil, fmt.Errorf("safetensors: read index %s: %w", indexPath, err)
	}
	f, err := readShards(filepath.Dir(indexPath), idx)
	if err != nil {
		return nil, fmt.Errorf("safetensors: read index %s: %w", indexPath, err)
	}
	return f, nil
}

// readIndex reads and decodes the index file, refusing one larger than MaxHeaderSize.
func readIndex(path string) (*index, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if st.Size() > MaxHeaderSize {
		return nil, formatErrorf("index of %d bytes exceeds the %d-byte limit", st.Size(), MaxHeaderSize)
	}
	b, err := os.ReadFile(path)
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
				shard, err := stringToken(dec, fmt.Sprintf("weight_map tensor %q", name))
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
		var s string
		if json.Unmarshal(raw, &s) == nil {
			meta[key] = s
			return nil
		}
		var buf bytes.Buffer
		if err := json.Compact(&buf, raw); err != nil {
			return formatErrorf("index metadata %q: invalid JSON: %v", key, err)
		}
		meta[key] = buf.String()
		return nil
	})
}

// shards lists the distinct shard files of the index, sorted.
func (idx *index) shards() []string {
	set := map[string]bool{}
	for _, s := range idx.weightMap {
		set[s] = true
	}
	out := make([]string, 0, len(set))
	for s := range set {
		out = append(out, s)
	}
	sort.Strings(out)
	return out
}

// readShards reads every shard through an os.Root on dir, so no path can leave it, and merges them.
func readShards(dir string, idx *index) (*File, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, err
	}
	defer root.Close()
	out := &File{Metadata: idx.metadata, Tensors: map[string]Tensor{}}
	for _, shard := range idx.shards() {
		if err := readShard(root, shard, idx, out); err != nil {
			return nil, fmt.Errorf("shard %s: %w", shard, err)
		}
	}
	return out, checkAllFound(idx, out)
}

// readShard reads one shard into out, requiring each of its tensors to be mapped to it.
func readShard(root *os.Root, shard string, idx *index, out *File) error {
	if !filepath.IsLocal(shard) {
		return formatErrorf("shard path %q leaves the index's folder", shard)
	}
	fh, err := root.Open(shard)
	if err != nil {
		return err
	}
	defer fh.Close()
	f, err := readOpen(fh)
	if err != nil {
		return err
	}
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
	names := make([]string, 0, len(idx.weightMap))
	for name := range idx.weightMap {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if _, ok := f.Tensors[name]; !ok {
			return formatErrorf("tensor %q: the weight_map puts it in %s, which lacks it", name, idx.weightMap[name])
		}
	}
	return nil
}
