package model

import (
	"bytes"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/x448/float16"
	"gorgonia.org/tensor"

	"github.com/flextrain/flextrain/internal/half"
	"github.com/flextrain/flextrain/safetensors"
)

// narrowed is every weight of ts rounded to dtype dt (F16 or BF16).
func narrowed(t *testing.T, ts map[string]safetensors.Tensor, dt safetensors.DType) map[string]safetensors.Tensor {
	t.Helper()
	out := map[string]safetensors.Tensor{}
	for name, x := range ts {
		v, err := x.Float32s()
		if err != nil {
			t.Fatal(err)
		}
		data := make([]byte, 2*len(v))
		for i, f := range v {
			b := float16.Fromfloat32(f).Bits()
			if dt == safetensors.BF16 {
				b = uint16(math.Float32bits(f) >> 16)
			}
			data[2*i], data[2*i+1] = byte(b), byte(b>>8)
		}
		out[name] = safetensors.Tensor{DType: dt, Shape: x.Shape, Data: data}
	}
	return out
}

// TestHalfWeightsSameNumbers loads the tiny model's weights, rounded to float16 and to bfloat16, twice: widened
// to float32 (FromTensors) and with the frozen matrices kept in 16 bits (FromTensorsHalf). A training step
// (loss and every gradient) and greedy decoding (every logit) must be bitwise the same: widening is exact and
// the multiplies widen the same values. Two trainable sets: LLaVA-1.5's, and one where lm_head and the MLPs
// stay frozen behind trainable layers, so that gradients flow through 16-bit weights.
func TestHalfWeightsSameNumbers(t *testing.T) {
	gc := goldenTrainCase(t)
	attnOnly := func(name string) bool {
		return defaultTrainable(gc.cfg)(name) && strings.Contains(name, "self_attn.")
	}
	for _, dt := range []safetensors.DType{safetensors.F16, safetensors.BF16} {
		ts := narrowed(t, gc.tensor, dt)
		for setName, trainable := range map[string]func(string) bool{"llava": defaultTrainable(gc.cfg), "attention only": attnOnly} {
			frozen := func(name string) bool { return !trainable(name) }
			wide, err := FromTensors(gc.cfg, tensor.Float32, ts)
			if err != nil {
				t.Fatal(err)
			}
			h, err := FromTensorsHalf(gc.cfg, ts, frozen)
			if err != nil {
				t.Fatal(err)
			}
			checkStore16(t, dt, wide, h, ts, frozen)
			opt := Options{Mode: Train, Alpha: 0.5, Trainable: trainable}
			mw, lw := runLoss(t, wide, gc.batch, opt)
			mh, lh := runLoss(t, h, gc.batch, opt)
			if lw != lh {
				t.Errorf("%s %s: loss %v with 16-bit weights, %v widened", dt, setName, lh, lw)
			}
			gw, gh := mw.Grads(), mh.Grads()
			if len(gw) != len(gh) || len(gw) == 0 {
				t.Fatalf("%s %s: %d gradients with 16-bit weights, %d widened", dt, setName, len(gh), len(gw))
			}
			for name, g := range gw {
				if !slices.Equal(g.Data().([]float32), gh[name].Data().([]float32)) {
					t.Errorf("%s %s: gradient of %s differs", dt, setName, name)
				}
			}
			mw.Close()
			mh.Close()
		}
		wide, _ := FromTensors(gc.cfg, tensor.Float32, ts)
		all, err := FromTensorsHalf(gc.cfg, ts, func(string) bool { return true })
		if err != nil {
			t.Fatal(err)
		}
		for s := range gc.batch.Len() {
			if a, b := decodeLogits(t, wide, gc.batch, s), decodeLogits(t, all, gc.batch, s); !slices.Equal(a, b) {
				t.Errorf("%s sample %d: decoding logits differ with 16-bit weights", dt, s)
			}
		}
	}
}

// checkStore16 checks what FromTensorsHalf kept in 16 bits (the frozen matrices, as the file's bits) and
// that every weight reads as the widened store's.
func checkStore16(t *testing.T, dt safetensors.DType, wide, h *Weights, ts map[string]safetensors.Tensor, frozen func(string) bool) {
	t.Helper()
	if !slices.Equal(wide.Names(), h.Names()) {
		t.Fatalf("%s: names differ", dt)
	}
	var kept int
	for _, name := range h.Names() {
		_, isHalf := h.Half(name)
		if want := frozen(name) && len(wide.Get(name).Shape()) >= 2; isHalf != want {
			t.Errorf("%s %s: kept in 16 bits %v, want %v", dt, name, isHalf, want)
		}
		if isHalf {
			kept++
			if h.Get(name) != nil || h.Stored(name).DType != dt || !bytes.Equal(h.Stored(name).Data, storedOf(ts, name).Data) {
				t.Errorf("%s %s: not stored as the file's bits", dt, name)
			}
		}
		if !bytes.Equal(h.Tensor(name).Data, wide.Tensor(name).Data) {
			t.Errorf("%s %s: Tensor differs from the widened store's", dt, name)
		}
	}
	if kept == 0 || h.HalfBytes() == 0 || wide.HalfBytes() != 0 {
		t.Errorf("%s: no weight kept in 16 bits", dt)
	}
}

// storedOf is the file tensor a weight came from: k/v_proj_hd, which the golden file lacks, copy k/v_proj.
func storedOf(ts map[string]safetensors.Tensor, name string) safetensors.Tensor {
	if x, ok := ts[name]; ok {
		return x
	}
	return ts[strings.Replace(name, "_hd.weight", ".weight", 1)]
}

// decodeLogits are the logits of sample s's prompt and of three greedy steps after it.
func decodeLogits(t *testing.T, w *Weights, b *Batch[float64], s int) []float64 {
	t.Helper()
	d, err := NewDecoder(w, b, s, 1)
	if err != nil {
		t.Fatal(err)
	}
	logits := d.Prefill()
	out := append([]float64(nil), logits...)
	for range 3 {
		if logits, err = d.Step(argmax(logits, nil)); err != nil {
			t.Fatal(err)
		}
		out = append(out, logits...)
	}
	return out
}

// TestHalfWeightsRefuseNonFinite names a 16-bit weight holding an Inf, as FromTensors does for wider ones.
func TestHalfWeightsRefuseNonFinite(t *testing.T) {
	gc := goldenTrainCase(t)
	ts := narrowed(t, gc.tensor, safetensors.F16)
	name := "model.layers.0.mlp.up_proj.weight"
	bad := ts[name]
	bad.Data = append([]byte(nil), bad.Data...)
	bad.Data[6], bad.Data[7] = 0x00, 0x7c // element 3: +Inf
	ts[name] = bad
	_, err := FromTensorsHalf(gc.cfg, ts, func(string) bool { return true })
	if err == nil || !strings.Contains(err.Error(), name) || !strings.Contains(err.Error(), "element 3 is +Inf") {
		t.Fatalf("err = %v, want one naming %s and element 3", err, name)
	}
}

// TestStoredBytes: StoredBytes counts what FromTensorsHalf holds (16-bit values at 2 bytes, float32 ones at 4,
// derived k/v_proj_hd sharing their source's bits when frozen), for every weight frozen and for LLaVA-1.5's
// trainable set.
func TestStoredBytes(t *testing.T) {
	gc := goldenTrainCase(t)
	ts := narrowed(t, gc.tensor, safetensors.F16)
	for name, frozen := range map[string]func(string) bool{
		"all frozen": func(string) bool { return true },
		"llava":      func(n string) bool { return !defaultTrainable(gc.cfg)(n) },
	} {
		w, err := FromTensorsHalf(gc.cfg, ts, frozen)
		if err != nil {
			t.Fatal(err)
		}
		want, elems := w.HalfBytes(), int64(0)
		for _, n := range w.Names() {
			if h, ok := w.Half(n); ok {
				elems += int64(len(h.Bits))
				continue
			}
			elems += int64(w.Get(n).Len())
			want += 4 * int64(w.Get(n).Len())
		}
		if gotElems, got := StoredBytes(gc.cfg, ts, frozen); got != want || gotElems != elems {
			t.Errorf("%s: StoredBytes = %d elements, %d bytes; the store holds %d, %d", name, gotElems, got, elems, want)
		}
	}
}

// TestNarrow: Narrow rounds the frozen float32 matrices to bfloat16 (each value as half.Round gives it),
// converts a float16 one, leaves vectors and what trains in float32, and refuses a value beyond float16's
// range, leaving the store as it was.
func TestNarrow(t *testing.T) {
	gc := goldenTrainCase(t)
	trainable := defaultTrainable(gc.cfg)
	frozen := func(n string) bool { return !trainable(n) }
	w, err := FromTensorsHalf(gc.cfg, narrowed(t, gc.tensor, safetensors.F16), func(n string) bool {
		return frozen(n) && strings.HasPrefix(n, VisionPrefix) // the tower in float16, the rest float32
	})
	if err != nil {
		t.Fatal(err)
	}
	before := w.Clone()
	if err := w.Narrow(half.BFloat16, frozen); err != nil {
		t.Fatal(err)
	}
	for _, name := range w.Names() {
		h, isHalf := w.Half(name)
		src, _ := before.Tensor(name).Float32s()
		switch want := frozen(name) && len(before.shapes()[name]) >= 2; {
		case isHalf != want:
			t.Fatalf("%s: 16-bit %v, want %v", name, isHalf, want)
		case !isHalf:
			if got, _ := w.Tensor(name).Float32s(); !slices.Equal(got, src) {
				t.Fatalf("%s changed", name)
			}
		case h.Kind != half.BFloat16:
			t.Fatalf("%s: %v, want BF16", name, h.Kind)
		default:
			for i, x := range src {
				if h.Bits[i] != half.BFloat16.Round(x) {
					t.Fatalf("%s[%d]: %#04x, want %v rounded, %#04x", name, i, h.Bits[i], x, half.BFloat16.Round(x))
				}
			}
		}
	}
	big := before.Clone()
	name := "model.layers.0.mlp.up_proj.weight"
	big.Get(name).Data().([]float32)[5] = 1e6
	err = big.Narrow(half.Float16, frozen)
	if err == nil || !strings.Contains(err.Error(), name) || !strings.Contains(err.Error(), "element 5") {
		t.Fatalf("err = %v; want one naming %s's element 5", err, name)
	}
	if _, isHalf := big.Half("model.mm_projector.0.weight"); isHalf || big.Get(name) == nil {
		t.Error("a refused Narrow changed the store")
	}
}
