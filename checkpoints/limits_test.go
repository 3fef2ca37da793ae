package checkpoints

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"strings"
	"testing"

	"github.com/flextrain/flextrain/safetensors"
)

// zeroTensors returns tensors of dtype with the given shapes and zero data.
func zeroTensors(dtype safetensors.DType, shapes map[string][]int) map[string]safetensors.Tensor {
	out := map[string]safetensors.Tensor{}
	for name, shape := range shapes {
		out[name] = safetensors.Tensor{DType: dtype, Shape: shape, Data: make([]byte, dataBound(shape, dtype.Size()))}
	}
	return out
}

// shapesOf returns the shapes of tensors by name, as a trainer knows them.
func shapesOf(tensors map[string]safetensors.Tensor) map[string][]int {
	out := map[string][]int{}
	for name, t := range tensors {
		out[name] = t.Shape
	}
	return out
}

// tinyLimits are the Limits a trainer of tinyCheckpoint sets: PayloadBound of its shapes at the widest
// element it stores (8 bytes).
func tinyLimits() Limits {
	ck := tinyCheckpoint(0)
	return Limits{Weights: PayloadBound(shapesOf(ck.Weights), 8), Optimizer: PayloadBound(shapesOf(ck.Optimizer), 8)}
}

func TestPayloadBound(t *testing.T) {
	many := map[string][]int{}
	for i := range 2000 {
		many[fmt.Sprintf("model.layers.%d.self_attn.q_proj.weight", i)] = []int{1}
	}
	long := map[string][]int{}
	for i := range 10 {
		long[strings.Repeat("\x01", 10000)+fmt.Sprint(i)] = []int{2, 3}
	}
	for _, tc := range []struct {
		name   string
		dtype  safetensors.DType
		shapes map[string][]int
	}{
		{"float32 weights", safetensors.F32, map[string][]int{"flex.0.q_proj.weight": {64, 32}, "flex.0.alpha": {}}},
		{"scalars and empty dimensions", safetensors.F64, map[string][]int{"s": {}, "e": {0}, "wide": {0, 999999999999999999, 0}}},
		{"names JSON escapes", safetensors.F16, map[string][]int{"\x00\x01\x1f": {1}, "\xff\xfe\xfd": {2}, `q"b\`: {3}, "\u2028\u2029": {4}, "<&>": {5}}},
		{"2000 tensors", safetensors.BOOL, many},
		{"long names of control characters", safetensors.I32, long},
		{"none", safetensors.F32, map[string][]int{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := safetensors.Write(&buf, &safetensors.File{Tensors: zeroTensors(tc.dtype, tc.shapes)}); err != nil {
				t.Fatal(err)
			}
			if got, want := PayloadBound(tc.shapes, tc.dtype.Size()), int64(buf.Len()); got < want {
				t.Errorf("PayloadBound = %d; want at least the %d bytes Save writes", got, want)
			}
		})
	}
}

func TestPayloadBoundSaturates(t *testing.T) {
	huge := map[string][]int{"a": {1 << 40, 1 << 40}, "b": {math.MaxInt}}
	if got := PayloadBound(huge, 8); got != math.MaxInt64 {
		t.Errorf("PayloadBound of overflowing shapes = %d; want math.MaxInt64", got)
	}
}

// TestLoadWithinLimits: a checkpoint loads under limits at least its payloads' sizes (PayloadBound's
// among them), and is refused, naming the claim and the limit, under one a byte too small.
func TestLoadWithinLimits(t *testing.T) {
	path := mustSave(t, t.TempDir(), 7)
	info, err := Inspect(path)
	if err != nil {
		t.Fatal(err)
	}
	weights, optimizer := info.Files[0].RawSize, info.Files[1].RawSize
	for _, tc := range []struct {
		name   string
		limits Limits
		says   string // "": Load succeeds
	}{
		{"zero: MaxPayload", Limits{}, ""},
		{"PayloadBound", tinyLimits(), ""},
		{"exactly the payloads", Limits{Weights: weights, Optimizer: optimizer}, ""},
		{"above MaxPayload", Limits{Weights: math.MaxInt64, Optimizer: math.MaxInt64}, ""},
		{"weights a byte short", Limits{Weights: weights - 1}, fmt.Sprintf("%s: checkpoints: corrupt: payload claims %d bytes, the limit is %d", weightsFile, weights, weights-1)},
		{"optimizer a byte short", Limits{Optimizer: optimizer - 1}, fmt.Sprintf("%s: checkpoints: corrupt: payload claims %d bytes, the limit is %d", optimizerFile, optimizer, optimizer-1)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ck, err := Store{Limits: tc.limits}.Load(path)
			if tc.says == "" {
				if err != nil {
					t.Fatalf("Load: got %v; want success", err)
				}
				if err := sameCheckpoint(ck, tinyCheckpoint(7)); err != nil {
					t.Error(err)
				}
				return
			}
			if !errors.Is(err, ErrCorrupt) || ck != nil || !strings.Contains(err.Error(), tc.says) {
				t.Errorf("got (%v, %v); want (nil, ErrCorrupt saying %q)", ck != nil, err, tc.says)
			}
		})
	}
}

// TestLimitsApplyToLatestResolveInspect: Latest, Resolve and Inspect read within the Store's limits too: a
// newer checkpoint whose weights are a 2 GiB bomb claiming its true size is skipped or refused, cheaply.
func TestLimitsApplyToLatestResolveInspect(t *testing.T) {
	dir := t.TempDir()
	mustSave(t, dir, 1)
	bombed := mustSave(t, dir, 2)
	writeBytes(t, filepath.Join(bombed, weightsFile), craftFrame(kindWeights, 2<<30, zstdZeros(2<<30)))
	reseal(t, bombed, 2)
	s := Store{Dir: dir, Limits: tinyLimits()}
	for _, tc := range []struct {
		name string
		run  func() error
	}{
		{"Latest skips it", func() error {
			if e, err := s.Latest(); err != nil || e.Step != 1 {
				return fmt.Errorf("Latest: got step %d, %v; want step 1", e.Step, err)
			}
			return nil
		}},
		{"Resolve auto warns", func() error {
			p, warnings, err := s.Resolve("auto")
			if err != nil || p != filepath.Join(dir, "checkpoint-1") || len(warnings) != 1 || !strings.Contains(warnings[0], "the limit is") {
				return fmt.Errorf("Resolve(auto): got %s, %q, %v; want checkpoint-1 and a warning naming the limit", p, warnings, err)
			}
			return nil
		}},
		{"Resolve path refuses", func() error { return wantCorrupt(s.Resolve(bombed)) }},
		{"Inspect directory refuses", func() error { _, err := s.Inspect(bombed); return wantCorrupt("", nil, err) }},
		{"Inspect file refuses", func() error {
			_, err := s.Inspect(filepath.Join(bombed, weightsFile))
			return wantCorrupt("", nil, err)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var err error
			if n := bytesAllocated(func() { err = tc.run() }); n > 8<<20 {
				t.Errorf("allocated %d bytes; want at most 8 MiB", n)
			}
			if err != nil {
				t.Error(err)
			}
		})
	}
}

// wantCorrupt reports an error unless err wraps ErrCorrupt and mentions the limit.
func wantCorrupt(_ string, _ []string, err error) error {
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "the limit is") {
		return fmt.Errorf("got %v; want ErrCorrupt naming the limit", err)
	}
	return nil
}

// TestSaveRefusesPayloadOverLimit: a Store never writes a checkpoint its own limits would refuse to load.
func TestSaveRefusesPayloadOverLimit(t *testing.T) {
	for _, limits := range []Limits{{Weights: 100}, {Optimizer: 100}} {
		dir := t.TempDir()
		if _, err := (Store{Dir: dir, Limits: limits}).Save(tinyCheckpoint(1)); err == nil || !strings.Contains(err.Error(), "limit") {
			t.Errorf("Save under %+v: got %v; want an error naming the limit", limits, err)
		}
		if names := dirNames(t, dir); len(names) != 0 {
			t.Errorf("dir after refused Save under %+v: got %v; want empty", limits, names)
		}
	}
}
