package pretrained

import (
	"fmt"
	"maps"
	"math"
	"math/bits"
	"os"
	"path/filepath"
	"slices"

	"github.com/flextrain/flextrain/model"
	"github.com/flextrain/flextrain/safetensors"
	"github.com/flextrain/flextrain/torchfile"
)

// The names a folder's weights may have, in the order Open looks for them: safetensors before PyTorch.
const (
	SafetensorsIndex  = safetensors.IndexName
	SafetensorsSingle = "model.safetensors"
	TorchIndex        = "pytorch_model.bin.index.json"
	TorchSingle       = "pytorch_model.bin"
)

// readTorch reads a pytorch_model.bin, and readTorchSharded the shards named by a pytorch_model.bin.index.json,
// within limit bytes, as package safetensors does for its files (variables so that a test can watch the
// limit a folder passes).
var readTorch, readTorchSharded = torchfile.ReadFile, torchfile.ReadSharded

// readWeights reads every tensor of a folder within limit bytes, and returns them with the file read (the
// index of the shards, or the single file).
func readWeights(dir string, limit int64) (map[string]safetensors.Tensor, string, error) {
	path := func(name string) string { return filepath.Join(dir, name) }
	switch {
	case isFile(path(SafetensorsIndex)) && isFile(path(SafetensorsSingle)):
		return nil, dir, fmt.Errorf("pretrained: %s holds both %s and %s: remove the stale one", dir, SafetensorsIndex, SafetensorsSingle)
	case isFile(path(SafetensorsIndex)):
		f, err := safetensors.ReadShardedLimit(path(SafetensorsIndex), limit)
		return tensorsOf(f), path(SafetensorsIndex), wrap(err)
	case isFile(path(SafetensorsSingle)):
		f, err := safetensors.ReadFileLimit(path(SafetensorsSingle), limit)
		return tensorsOf(f), path(SafetensorsSingle), wrap(err)
	case isFile(path(TorchIndex)):
		ts, err := readTorchWith(readTorchSharded, path(TorchIndex), limit)
		return ts, path(TorchIndex), err
	case isFile(path(TorchSingle)):
		ts, err := readTorchWith(readTorch, path(TorchSingle), limit)
		return ts, path(TorchSingle), err
	}
	return nil, dir, fmt.Errorf("pretrained: %s holds no weights: none of %s, %s, %s, %s", dir,
		SafetensorsIndex, SafetensorsSingle, TorchIndex, TorchSingle)
}

// readTorchWith reads PyTorch weights with read.
func readTorchWith(read func(string, int64) (map[string]safetensors.Tensor, error), path string, limit int64) (map[string]safetensors.Tensor, error) {
	ts, err := read(path, limit)
	if err != nil {
		return nil, fmt.Errorf("pretrained: %w", err)
	}
	return ts, nil
}

func tensorsOf(f *safetensors.File) map[string]safetensors.Tensor {
	if f == nil {
		return nil
	}
	return f.Tensors
}

func wrap(err error) error {
	if err != nil {
		return fmt.Errorf("pretrained: %w", err)
	}
	return nil
}

func isFile(path string) bool {
	st, err := os.Stat(path)
	return err == nil && !st.IsDir()
}

func sortedKeys[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }

// folderLimit bounds the weight files of a LLaVA folder of the model of cfg: model.MaxWeightBytes of the model
// with HR projections in every layer from 1 on (the most a folder can have), and room for the buffers and
// CLIP's final LayerNorm that Open reads and ignores.
func folderLimit(cfg model.Config) int64 {
	cfg.Flex = model.FlexConfig{NSA: 1, Zoom: 1, SelectGrid: 1}
	g := cfg.Vision.ImageSize / max(cfg.Vision.PatchSize, 1)
	dh := cfg.Text.HiddenSize / max(cfg.Text.NumHeads, 1)
	extra := 8 * int64(2*cfg.Vision.HiddenSize+g*g+1+cfg.Text.NumLayers*dh+1024)
	return satAdd(model.MaxWeightBytes(cfg), extra)
}

// clipLimit bounds a CLIP folder's weight files: twice the tower at 8 bytes an element (CLIP's text tower is
// smaller than its vision tower), and the headers.
func clipLimit(v model.VisionConfig) int64 {
	var n int64
	for _, shape := range towerShapes(v) {
		n = satAdd(n, satMul(8, elements(shape)))
	}
	return satAdd(satMul(2, n), safetensors.MaxHeaderSize)
}

// elements is the product of a shape's dimensions, saturating at math.MaxInt64.
func elements(shape []int) int64 {
	n := int64(1)
	for _, d := range shape {
		n = satMul(n, int64(max(d, 0)))
	}
	return n
}

// satMul multiplies two non-negative numbers, saturating at math.MaxInt64.
func satMul(a, b int64) int64 {
	hi, lo := bits.Mul64(uint64(a), uint64(b))
	if hi != 0 || lo > math.MaxInt64 {
		return math.MaxInt64
	}
	return int64(lo)
}

// satAdd adds two non-negative numbers, saturating at math.MaxInt64.
func satAdd(a, b int64) int64 {
	if a > math.MaxInt64-b {
		return math.MaxInt64
	}
	return a + b
}
