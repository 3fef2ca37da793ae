package pretrained

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode"

	"github.com/flextrain/flextrain/internal/atomicfile"
	"github.com/flextrain/flextrain/safetensors"
)

// shardName is the file of shard k (from 1) of n: model.safetensors when there is one.
func shardName(k, n int) string {
	if n == 1 {
		return SafetensorsSingle
	}
	return fmt.Sprintf("model-%05d-of-%05d.safetensors", k, n)
}

var shardPattern = regexp.MustCompile(`^model-\d{5}-of-\d{5}\.safetensors$`)

// writeShards writes each shard, then the index when there are several, and returns the files written.
func (p *writePlan) writeShards(dir string) ([]string, error) {
	var names []string
	index := map[string]string{}
	var total int64
	for k, shard := range p.shards {
		name := shardName(k+1, len(p.shards))
		n, err := p.writeShard(filepath.Join(dir, name), shard)
		if err != nil {
			return nil, err
		}
		for _, t := range shard {
			index[t.name] = name
		}
		names, total = append(names, name), total+n
	}
	if len(p.shards) == 1 {
		return names, nil
	}
	idx := map[string]any{"metadata": map[string]int64{"total_size": total}, "weight_map": index}
	return append(names, SafetensorsIndex), writeJSON(filepath.Join(dir, SafetensorsIndex), idx)
}

// writeShard converts one shard's tensors and writes the file atomically; it returns the tensor bytes.
func (p *writePlan) writeShard(path string, shard []outTensor) (int64, error) {
	meta := maps.Clone(p.opts.Metadata)
	if meta == nil {
		meta = map[string]string{}
	}
	meta["format"] = "pt"
	f := &safetensors.File{Metadata: meta, Tensors: map[string]safetensors.Tensor{}}
	var total int64
	for _, t := range shard {
		data, err := encode(t.src, p.dtype, t.rows, t.row)
		if err != nil {
			return 0, fmt.Errorf("tensor %s: %w", t.name, err)
		}
		f.Tensors[t.name] = safetensors.Tensor{DType: p.dtype, Shape: t.shape, Data: data}
		total += int64(len(data))
	}
	var buf bytes.Buffer
	if err := safetensors.Write(&buf, f); err != nil {
		return 0, err
	}
	return total, atomicfile.WriteFile(path, buf.Bytes())
}

// removeStaleWeights removes the safetensors weight files of an earlier write that are not among keep.
func removeStaleWeights(dir string, keep []string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	var stale []string
	for _, e := range entries {
		n := e.Name()
		isWeights := n == SafetensorsSingle || n == SafetensorsIndex || shardPattern.MatchString(n)
		if isWeights && !slices.Contains(keep, n) {
			stale = append(stale, n)
		}
	}
	return removeFiles(dir, stale)
}

// removeFiles removes the named files of dir (an absent one is no error) and syncs the folder.
func removeFiles(dir string, names []string) error {
	var errs []error
	for _, n := range names {
		if err := os.Remove(filepath.Join(dir, n)); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	return atomicfile.SyncDir(dir)
}

// writeJSON writes v as indented JSON with a final newline, atomically.
func writeJSON(path string, v any) error {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return atomicfile.WriteFile(path, buf.Bytes())
}

// naturalCompare orders names with their numbers compared as numbers (layers.2 before layers.10).
func naturalCompare(a, b string) int {
	for a != "" && b != "" {
		ca, ra := chunk(a)
		cb, rb := chunk(b)
		if c := compareChunk(ca, cb); c != 0 {
			return c
		}
		a, b = ra, rb
	}
	return len(a) - len(b)
}

// chunk splits s after its leading run of digits, or of non-digits.
func chunk(s string) (string, string) {
	digit := unicode.IsDigit(rune(s[0]))
	i := 1
	for i < len(s) && unicode.IsDigit(rune(s[i])) == digit {
		i++
	}
	return s[:i], s[i:]
}

// compareChunk compares two chunks, as numbers when both are digits.
func compareChunk(a, b string) int {
	na, errA := strconv.Atoi(a)
	nb, errB := strconv.Atoi(b)
	if errA == nil && errB == nil && na != nb {
		return na - nb
	}
	return strings.Compare(a, b)
}
