package torchfile

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"

	"github.com/flextrain/flextrain/internal/fileio"
	"github.com/flextrain/flextrain/safetensors"
)

// IndexName is the file name transformers gives the index of a sharded torch.save checkpoint.
const IndexName = "pytorch_model.bin.index.json"

// maxIndexSize caps the index file, as safetensors caps its own index and headers.
const maxIndexSize = safetensors.MaxHeaderSize

// ReadSharded reads a sharded torch.save checkpoint from its index (pytorch_model.bin.index.json, as
// transformers writes it: {"metadata": {...}, "weight_map": {name: shard}}) and the shards beside it,
// which together may hold at most limit bytes (limit ≤ 0: no limit). Every shard is opened and the sizes
// summed before any is read, so shards too large together are refused (ErrTooLarge) before anything is
// mapped or allocated; each is then read as ReadFile reads a file, within what the others left. Every shard
// path must stay inside the index's folder (checked lexically and again, symbolic links included, by
// os.Root). Each tensor must be in the shard the weight_map names, and every tensor of the weight_map must
// be found. Errors name the index and the shard; a failed read releases the shards already mapped.
func ReadSharded(indexPath string, limit int64) (map[string]safetensors.Tensor, error) {
	weightMap, err := readIndex(indexPath)
	if err == nil {
		var ts map[string]safetensors.Tensor
		if ts, err = readShards(filepath.Dir(indexPath), weightMap, normLimit(limit)); err == nil {
			return ts, nil
		}
	}
	return nil, fmt.Errorf("torchfile: read index %s: %w", indexPath, err)
}

// readIndex reads and decodes the index file, a regular file of at most maxIndexSize bytes.
func readIndex(path string) (map[string]string, error) {
	b, err := fileio.ReadFile(path, maxIndexSize)
	if errors.Is(err, fileio.ErrTooLarge) {
		return nil, fmt.Errorf("%w: index: %w", ErrFormat, err)
	}
	if err != nil {
		return nil, err
	}
	return decodeIndex(b)
}

// decodeIndex returns the weight_map of an index, refusing repeated keys, a non-string shard name, an
// empty map and data after the object; the metadata and any other key are skipped.
func decodeIndex(b []byte) (map[string]string, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	var weightMap map[string]string
	err := walkObject(dec, "index", func(key string) (err error) {
		if key != "weight_map" {
			var skip json.RawMessage
			return jsonError(dec.Decode(&skip), "index", key)
		}
		weightMap, err = decodeWeightMap(dec)
		return err
	})
	if err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, formatErrorf("index: data after the JSON object")
	}
	if len(weightMap) == 0 {
		return nil, formatErrorf("index: no weight_map, or an empty one")
	}
	return weightMap, nil
}

// decodeWeightMap decodes the weight_map object of tensor names to shard files.
func decodeWeightMap(dec *json.Decoder) (map[string]string, error) {
	weightMap := map[string]string{}
	err := walkObject(dec, "weight_map", func(name string) error {
		tok, err := dec.Token()
		shard, ok := tok.(string)
		if err == nil && !ok {
			return formatErrorf("weight_map: tensor %s: shard is %v, want a string", short(name), tok)
		}
		weightMap[name] = shard
		return jsonError(err, "weight_map", name)
	})
	return weightMap, err
}

// walkObject reads a JSON object from dec, calling fn for each key (fn reads the value) and refusing a
// repeated key.
func walkObject(dec *json.Decoder, ctx string, fn func(key string) error) error {
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return formatErrorf("%s: want a JSON object", ctx)
	}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		key, ok := tok.(string)
		if err != nil || !ok {
			return formatErrorf("%s: invalid JSON key", ctx)
		}
		if seen[key] {
			return formatErrorf("%s: key %s repeated", ctx, short(key))
		}
		seen[key] = true
		if err := fn(key); err != nil {
			return err
		}
	}
	if _, err := dec.Token(); err != nil {
		return formatErrorf("%s: unterminated object", ctx)
	}
	return nil
}

// jsonError wraps a JSON syntax error in ErrFormat.
func jsonError(err error, ctx, key string) error {
	if err != nil {
		return formatErrorf("%s: %s: invalid JSON: %v", ctx, short(key), err)
	}
	return nil
}

// readShards reads every shard through an os.Root on dir, so no path can leave it, and merges them: first
// the shards' sizes together against limit (positive), then each shard within the bytes the others left.
// On failure the mappings of the shards already read are released.
func readShards(dir string, weightMap map[string]string, limit int64) (map[string]safetensors.Tensor, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, err
	}
	defer root.Close()
	shards := slices.Compact(slices.Sorted(maps.Values(weightMap)))
	if err := checkShardSizes(root, shards, limit); err != nil {
		return nil, err
	}
	ts := map[string]safetensors.Tensor{}
	releases, err := readEach(root, shards, weightMap, ts, limit)
	if err == nil {
		err = checkAllFound(weightMap, ts)
	}
	if err != nil {
		for _, release := range releases {
			release()
		}
		return nil, err
	}
	return ts, nil
}

// readEach reads the shards in turn into ts, each within what the ones before left of limit, and returns
// the releases of their mappings.
func readEach(root *os.Root, shards []string, weightMap map[string]string, ts map[string]safetensors.Tensor, limit int64) ([]func(), error) {
	var releases []func()
	for _, shard := range shards {
		size, release, err := readShard(root, shard, weightMap, ts, limit)
		if err != nil {
			return releases, fmt.Errorf("shard %s: %w", shard, err)
		}
		releases = append(releases, release)
		limit -= size
	}
	return releases, nil
}

// checkShardSizes opens each shard and refuses the lot when their sizes add up to more than limit.
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
		return nil, formatErrorf("shard path %s leaves the index's folder", short(shard))
	}
	return fileio.OpenIn(root, shard)
}

// readShard reads one shard of at most limit bytes into out, requiring each of its tensors to be mapped to
// it, and returns its size and the release of its mapping.
func readShard(root *os.Root, shard string, weightMap map[string]string, out map[string]safetensors.Tensor, limit int64) (int64, func(), error) {
	fh, err := openShard(root, shard)
	if err != nil {
		return 0, nil, err
	}
	defer fh.Close()
	ts, size, release, err := readOpen(fh, limit)
	if err != nil {
		return 0, nil, err
	}
	if err := merge(ts, shard, weightMap, out); err != nil {
		release()
		return 0, nil, err
	}
	return size, release, nil
}

// merge adds the tensors of a shard to out, requiring each to be mapped to that shard.
func merge(ts map[string]safetensors.Tensor, shard string, weightMap map[string]string, out map[string]safetensors.Tensor) error {
	for _, name := range slices.Sorted(maps.Keys(ts)) {
		if mapped, ok := weightMap[name]; !ok {
			return formatErrorf("tensor %s is in this shard but not in the weight_map", short(name))
		} else if mapped != shard {
			return formatErrorf("tensor %s is in this shard but the weight_map puts it in %s", short(name), short(mapped))
		}
		out[name] = ts[name]
	}
	return nil
}

// checkAllFound requires every tensor of the weight_map to have been found in its shard.
func checkAllFound(weightMap map[string]string, ts map[string]safetensors.Tensor) error {
	for _, name := range slices.Sorted(maps.Keys(weightMap)) {
		if _, ok := ts[name]; !ok {
			return formatErrorf("tensor %s: the weight_map puts it in %s, which lacks it", short(name), short(weightMap[name]))
		}
	}
	return nil
}
