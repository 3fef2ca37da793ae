package model

import (
	"encoding/binary"
	"errors"
	"maps"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"testing"

	"gorgonia.org/tensor"

	"github.com/flextrain/flextrain/safetensors"
)

const goldenTrain = "../testdata/golden/tiny_train.safetensors"

// goldenWeights reads the golden tiny case and returns its configuration and its model weights (the
// tensors that are neither inputs nor expectations).
func goldenWeights(t *testing.T) (Config, map[string]safetensors.Tensor) {
	t.Helper()
	f, err := safetensors.ReadFile(goldenTrain)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := ParseConfig([]byte(f.Metadata["config"]))
	if err != nil {
		t.Fatal(err)
	}
	ws := map[string]safetensors.Tensor{}
	for name, tn := range f.Tensors {
		if !strings.HasPrefix(name, "inputs.") && !strings.HasPrefix(name, "expect.") {
			ws[name] = tn
		}
	}
	return cfg, ws
}

// without returns a copy of ts less the named tensors.
func without(ts map[string]safetensors.Tensor, names ...string) map[string]safetensors.Tensor {
	out := make(map[string]safetensors.Tensor, len(ts))
	for k, v := range ts {
		out[k] = v
	}
	for _, n := range names {
		delete(out, n)
	}
	return out
}

// with returns a copy of ts with the tensor name set to tn.
func with(ts map[string]safetensors.Tensor, name string, tn safetensors.Tensor) map[string]safetensors.Tensor {
	out := without(ts)
	out[name] = tn
	return out
}

func TestShapesMatchGolden(t *testing.T) {
	cfg, ws := goldenWeights(t)
	shapes := Shapes(cfg)
	if got, want := slices.Sorted(maps.Keys(shapes)), slices.Sorted(maps.Keys(ws)); !reflect.DeepEqual(got, want) {
		t.Fatalf("names: got %d %v; want the golden file's %d %v", len(got), got, len(want), want)
	}
	for name, tn := range ws {
		if !reflect.DeepEqual(shapes[name], tn.Shape) {
			t.Errorf("%s: got shape %v; want %v", name, shapes[name], tn.Shape)
		}
	}
}

func TestShapesCountsLayers(t *testing.T) {
	cfg, _ := goldenWeights(t)
	cfg.Vision.NumLayers, cfg.Text.NumLayers, cfg.Flex.NSA = 3, 5, 1
	count := func(substr string) int {
		n := 0
		for name := range Shapes(cfg) {
			if strings.Contains(name, substr) {
				n++
			}
		}
		return n
	}
	for _, c := range []struct {
		substr string
		want   int
	}{
		{"_proj_hd.weight", 2 * 4}, {"vision_model.encoder.layers.", 16 * 3}, {".input_layernorm.", 5}, {"post_layernorm", 0},
	} {
		if got := count(c.substr); got != c.want {
			t.Errorf("names containing %q: got %d; want %d", c.substr, got, c.want)
		}
	}
}

func TestFromTensorsGolden(t *testing.T) {
	cfg, ws := goldenWeights(t)
	for _, dt := range []tensor.Dtype{tensor.Float64, tensor.Float32} {
		w, err := FromTensors(cfg, dt, ws)
		if err != nil {
			t.Fatalf("%v: %v", dt, err)
		}
		if got, want := w.Names(), slices.Sorted(maps.Keys(ws)); !reflect.DeepEqual(got, want) || len(w.Derived()) != 0 {
			t.Errorf("%v: got names %v, derived %v; want %v, none derived", dt, got, w.Derived(), want)
		}
		for name, tn := range ws {
			want, _ := tn.Float64s()
			if !sameValues(w.Get(name), want) || w.Get(name).Dtype() != dt {
				t.Errorf("%v %s: values or dtype differ from the file", dt, name)
			}
		}
	}
}

// sameValues compares a stored tensor with float64 values, rounding them for a float32 store.
func sameValues(d *tensor.Dense, want []float64) bool {
	switch v := d.Data().(type) {
	case []float64:
		return reflect.DeepEqual(v, want)
	case []float32:
		for i := range v {
			if v[i] != float32(want[i]) {
				return false
			}
		}
		return len(v) == len(want)
	}
	return false
}

func TestFromTensorsProblems(t *testing.T) {
	cfg, ws := goldenWeights(t)
	nan := safetensors.FromFloat64([]int{48}, make([]float64, 48))
	binary.LittleEndian.PutUint64(nan.Data[8*5:], math.Float64bits(math.NaN()))
	cases := []struct {
		name string
		dt   tensor.Dtype
		edit func(map[string]safetensors.Tensor)
		want [][]string // one line per problem, in order, each with these substrings
	}{
		{"missing", tensor.Float64, func(m map[string]safetensors.Tensor) { delete(m, "model.norm.weight") },
			[][]string{{`"model.norm.weight"`, "missing", "[48]"}}},
		{"missing k_proj of a flex layer", tensor.Float64, func(m map[string]safetensors.Tensor) {
			delete(m, "model.layers.3.self_attn.k_proj.weight")
			delete(m, "model.layers.3.self_attn.k_proj_hd.weight")
		}, [][]string{{`"model.layers.3.self_attn.k_proj.weight"`, "missing", "[48 48]"}}},
		{"unexpected", tensor.Float64, func(m map[string]safetensors.Tensor) {
			m["model.extra"] = safetensors.FromFloat64([]int{1}, []float64{1})
		}, [][]string{{`"model.extra"`, "unexpected"}}},
		{"hd on a plain layer", tensor.Float64, func(m map[string]safetensors.Tensor) {
			m["model.layers.1.self_attn.v_proj_hd.weight"] = m["model.layers.1.self_attn.v_proj.weight"]
		}, [][]string{{`"model.layers.1.self_attn.v_proj_hd.weight"`, "unexpected", "n_sa = 2"}}},
		{"misshaped", tensor.Float32, func(m map[string]safetensors.Tensor) {
			m["lm_head.weight"] = safetensors.FromFloat64([]int{48, 96}, make([]float64, 96*48))
		}, [][]string{{`"lm_head.weight"`, "[48 96]", "[96 48]"}}},
		{"NaN", tensor.Float64, func(m map[string]safetensors.Tensor) { m["model.norm.weight"] = nan },
			[][]string{{`"model.norm.weight"`, "element 5", "NaN"}}},
		{"overflows float32", tensor.Float32, func(m map[string]safetensors.Tensor) {
			m["model.norm.weight"] = safetensors.FromFloat64([]int{48}, append(make([]float64, 47), -1e300))
		}, [][]string{{`"model.norm.weight"`, "element 47", "-Inf", "float32"}}},
		{"integer dtype", tensor.Float64, func(m map[string]safetensors.Tensor) {
			m["model.norm.weight"] = safetensors.FromInt64([]int{48}, make([]int64, 48))
		}, [][]string{{`"model.norm.weight"`, "I64", "floating-point"}}},
		{"all at once, sorted", tensor.Float64, func(m map[string]safetensors.Tensor) {
			delete(m, "model.norm.weight")
			m["aaa.extra"] = nan
			m["lm_head.weight"] = nan
			m["model.layers.0.input_layernorm.weight"] = nan
		}, [][]string{{`"aaa.extra"`, "unexpected"}, {`"lm_head.weight"`, "[48]"},
			{`"model.layers.0.input_layernorm.weight"`, "NaN"}, {`"model.norm.weight"`, "missing"}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := without(ws)
			c.edit(m)
			_, err := FromTensors(cfg, c.dt, m)
			wantProblems(t, err, c.want)
		})
	}
}

// wantProblems checks that err has one line per problem, line i mentioning every string of want[i]; no
// problems wanted, no error.
func wantProblems(t *testing.T, err error, want [][]string) {
	t.Helper()
	if err == nil {
		if len(want) > 0 {
			t.Fatalf("got no error; want %d problems", len(want))
		}
		return
	}
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != len(want) {
		t.Fatalf("got %d problems:\n%v\nwant %d", len(lines), err, len(want))
	}
	for i, subs := range want {
		for _, s := range subs {
			if !strings.Contains(lines[i], s) {
				t.Errorf("problem %d: got %q; want it to mention %s", i, lines[i], s)
			}
		}
	}
}

func TestCheckTensors(t *testing.T) {
	cfg, ws := goldenWeights(t)
	f64 := func(shape ...int) safetensors.Tensor {
		n := 1
		for _, d := range shape {
			n *= d
		}
		return safetensors.FromFloat64(shape, make([]float64, n))
	}
	cases := []struct {
		name string
		ts   map[string]safetensors.Tensor
		want [][]string // one line per problem, in order, each with these substrings
	}{
		{"every weight", ws, nil},
		{"none", map[string]safetensors.Tensor{}, nil},
		{"a few, any dtype", map[string]safetensors.Tensor{"lm_head.weight": ws["lm_head.weight"],
			"model.norm.weight": safetensors.FromInt64([]int{48}, make([]int64, 48))}, nil},
		{"dimensions swapped", map[string]safetensors.Tensor{"lm_head.weight": f64(48, 96)},
			[][]string{{`"lm_head.weight": shape [48 96], the model has [96 48]`}}},
		{"vector as a matrix", map[string]safetensors.Tensor{"model.norm.weight": f64(1, 48)},
			[][]string{{`"model.norm.weight": shape [1 48], the model has [48]`}}},
		{"scalar", map[string]safetensors.Tensor{"model.norm.weight": f64()},
			[][]string{{`"model.norm.weight": shape [], the model has [48]`}}},
		{"unknown", map[string]safetensors.Tensor{"model.extra": f64(3)},
			[][]string{{`"model.extra"`, "F64[3]", "no such weight"}}},
		{"hd on a plain layer", map[string]safetensors.Tensor{"model.layers.1.self_attn.k_proj_hd.weight": f64(48, 48)},
			[][]string{{`"model.layers.1.self_attn.k_proj_hd.weight"`, "no such weight", "n_sa = 2"}}},
		{"all at once, sorted", map[string]safetensors.Tensor{"lm_head.weight": f64(48, 96), "aaa": f64(1),
			"model.norm.weight": ws["model.norm.weight"], "model.embed_tokens.weight": f64(48, 96)},
			[][]string{{`"aaa"`, "no such weight"}, {`"lm_head.weight"`, "[48 96]", "[96 48]"},
				{`"model.embed_tokens.weight"`, "[48 96]", "[96 48]"}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { wantProblems(t, CheckTensors(cfg, c.ts), c.want) })
	}
	cfg.Text.NumHeads = 5
	if err := CheckTensors(cfg, ws); err == nil || !strings.Contains(err.Error(), "num_heads") {
		t.Errorf("invalid config: got %v; want the config error", err)
	}
}

func TestFromTensorsHalfPrecision(t *testing.T) {
	cfg, ws := goldenWeights(t)
	bf16 := safetensors.Tensor{DType: safetensors.BF16, Shape: []int{48}, Data: make([]byte, 96)}
	f16 := safetensors.Tensor{DType: safetensors.F16, Shape: []int{48}, Data: make([]byte, 96)}
	for i := 0; i < 48; i++ {
		binary.LittleEndian.PutUint16(bf16.Data[2*i:], 0xC040) // -3
		binary.LittleEndian.PutUint16(f16.Data[2*i:], 0x3800)  // 0.5
	}
	m := without(ws)
	m["model.norm.weight"], m["model.layers.0.input_layernorm.weight"] = bf16, f16
	for _, dt := range []tensor.Dtype{tensor.Float32, tensor.Float64} {
		w, err := FromTensors(cfg, dt, m)
		if err != nil {
			t.Fatalf("%v: %v", dt, err)
		}
		for name, want := range map[string]float64{"model.norm.weight": -3, "model.layers.0.input_layernorm.weight": 0.5} {
			if !sameValues(w.Get(name), filled(48, want)) {
				t.Errorf("%v %s: got %v; want all %g", dt, name, w.Get(name).Data(), want)
			}
		}
	}
}

func filled(n int, x float64) []float64 {
	v := make([]float64, n)
	for i := range v {
		v[i] = x
	}
	return v
}

func TestFromTensorsCopiesHD(t *testing.T) {
	cfg, ws := goldenWeights(t)
	k, v := "model.layers.2.self_attn.k_proj.weight", "model.layers.2.self_attn.v_proj.weight"
	khd, vhd := "model.layers.2.self_attn.k_proj_hd.weight", "model.layers.2.self_attn.v_proj_hd.weight"
	w, err := FromTensors(cfg, tensor.Float64, without(ws, khd, vhd))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := w.Derived(), []string{khd, vhd}; !reflect.DeepEqual(got, want) {
		t.Errorf("Derived: got %v; want %v", got, want)
	}
	for hd, src := range map[string]string{khd: k, vhd: v} {
		fileHD, _ := ws[hd].Float64s()
		if !reflect.DeepEqual(w.Get(hd).Data(), w.Get(src).Data()) || sameValues(w.Get(hd), fileHD) {
			t.Errorf("%s: want a copy of %s (which the golden %s is not)", hd, src, hd)
		}
	}
	w.Get(k).Data().([]float64)[0] += 1
	if w.Get(khd).Data().([]float64)[0] == w.Get(k).Data().([]float64)[0] {
		t.Errorf("%s shares memory with %s; want a copy", khd, k)
	}
}

func TestCloneAndTensors(t *testing.T) {
	cfg, ws := goldenWeights(t)
	for _, c := range []struct {
		dt   tensor.Dtype
		want safetensors.DType
	}{{tensor.Float32, safetensors.F32}, {tensor.Float64, safetensors.F64}} {
		w, err := FromTensors(cfg, c.dt, ws)
		if err != nil {
			t.Fatal(err)
		}
		c2 := w.Clone()
		name := "lm_head.weight"
		before := w.Tensors()[name]
		c2.Get(name).Zero()
		if after := w.Tensors()[name]; !reflect.DeepEqual(after, before) {
			t.Errorf("%v: zeroing the clone changed the original", c.dt)
		}
		back, err := FromTensors(cfg, c.dt, w.Tensors())
		if err != nil {
			t.Fatalf("%v: reloading Tensors(): %v", c.dt, err)
		}
		for _, n := range w.Names() {
			if tn := w.Tensors()[n]; tn.DType != c.want || !reflect.DeepEqual(back.Get(n).Data(), w.Get(n).Data()) {
				t.Errorf("%v %s: got %s, values equal %v; want %s and equal values", c.dt, n, tn.DType,
					reflect.DeepEqual(back.Get(n).Data(), w.Get(n).Data()), c.want)
			}
		}
		if c2.Config() != w.Config() || c2.Dtype() != c.dt {
			t.Errorf("%v: clone has config/dtype %v/%v", c.dt, c2.Config(), c2.Dtype())
		}
	}
}

func TestFromTensorsRefusesBadStore(t *testing.T) {
	cfg, ws := goldenWeights(t)
	if _, err := FromTensors(cfg, tensor.Int, ws); err == nil || !strings.Contains(err.Error(), "float32 or float64") {
		t.Errorf("int store: got %v; want a dtype error", err)
	}
	cfg.Text.NumHeads = 5
	if _, err := FromTensors(cfg, tensor.Float64, ws); err == nil || !strings.Contains(err.Error(), "num_heads") {
		t.Errorf("invalid config: got %v; want the config error", err)
	}
}

// writeLayouts writes the golden weights as a single file, a folder with model.safetensors, and a sharded
// folder, and returns the paths LoadWeights should accept.
func writeLayouts(t *testing.T, ws map[string]safetensors.Tensor) []string {
	t.Helper()
	dir := t.TempDir()
	single, folder, sharded := filepath.Join(dir, "w.safetensors"), filepath.Join(dir, "single"), filepath.Join(dir, "sharded")
	os.Mkdir(folder, 0o755)
	os.Mkdir(sharded, 0o755)
	shards := []map[string]safetensors.Tensor{{}, {}}
	weightMap := map[string]string{}
	for name, tn := range ws {
		i := 0
		if strings.HasPrefix(name, VisionPrefix) {
			i = 1
		}
		shards[i][name] = tn
		weightMap[name] = weightMapFile(i)
	}
	must(t, safetensors.WriteFile(single, &safetensors.File{Tensors: ws}))
	must(t, safetensors.WriteFile(filepath.Join(folder, "model.safetensors"), &safetensors.File{Tensors: ws}))
	for i, s := range shards {
		must(t, safetensors.WriteFile(filepath.Join(sharded, weightMapFile(i)), &safetensors.File{Tensors: s}))
	}
	must(t, os.WriteFile(filepath.Join(sharded, safetensors.IndexName), indexJSON(weightMap), 0o644))
	return []string{single, folder, sharded, filepath.Join(sharded, safetensors.IndexName)}
}

func weightMapFile(i int) string {
	return []string{"model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"}[i]
}

func indexJSON(weightMap map[string]string) []byte {
	var b strings.Builder
	b.WriteString(`{"metadata": {"total_size": 1}, "weight_map": {`)
	for i, name := range slices.Sorted(maps.Keys(weightMap)) {
		if i > 0 {
			b.WriteString(",")
		}
		b.WriteString(`"` + name + `": "` + weightMap[name] + `"`)
	}
	b.WriteString("}}")
	return []byte(b.String())
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestLoadWeightsLayouts(t *testing.T) {
	cfg, ws := goldenWeights(t)
	for _, path := range writeLayouts(t, ws) {
		w, err := LoadWeights(path, cfg, tensor.Float32)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		for name, tn := range ws {
			want, _ := tn.Float64s()
			if !sameValues(w.Get(name), want) {
				t.Errorf("%s: %s differs from the file", path, name)
			}
		}
	}
}

func TestLoadWeightsRefuses(t *testing.T) {
	cfg, ws := goldenWeights(t)
	paths := writeLayouts(t, ws)
	both := paths[2]
	must(t, safetensors.WriteFile(filepath.Join(both, "model.safetensors"), &safetensors.File{Tensors: ws}))
	swapped := filepath.Join(t.TempDir(), "swapped.safetensors")
	lm := ws["lm_head.weight"]
	must(t, safetensors.WriteFile(swapped, &safetensors.File{Tensors: with(ws, "lm_head.weight",
		safetensors.Tensor{DType: lm.DType, Shape: []int{48, 96}, Data: lm.Data})}))
	cases := []struct {
		name, path string
		want       []string
	}{
		{"golden case file", goldenTrain, []string{goldenTrain, `"inputs.labels"`, `"expect.loss"`, "unexpected"}},
		{"empty folder", t.TempDir(), []string{"neither"}},
		{"both layouts", both, []string{"both"}},
		{"no such file", filepath.Join(t.TempDir(), "x.safetensors"), []string{"x.safetensors", "no such file"}},
		{"dimensions swapped", swapped, []string{`"lm_head.weight"`, "shape [48 96], the model has [96 48]"}},
	}
	for _, c := range cases {
		if _, err := LoadWeights(c.path, cfg, tensor.Float64); err == nil {
			t.Errorf("%s: got no error; want one", c.name)
		} else {
			for _, s := range append(c.want, c.path) {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("%s: got %q; want it to mention %s", c.name, err, s)
				}
			}
		}
	}
}

func TestMaxWeightBytes(t *testing.T) {
	cfg, _ := goldenWeights(t)
	golden := int64(safetensors.MaxHeaderSize)
	for _, shape := range Shapes(cfg) {
		n := int64(8)
		for _, d := range shape {
			n *= int64(d)
		}
		golden += n + 8
	}
	huge := cfg
	huge.Text.VocabSize = 1 << 61
	for _, c := range []struct {
		name string
		cfg  Config
		want int64
	}{
		{"golden: every weight in F64, a length each, one MaxHeaderSize", cfg, golden},
		{"saturates", huge, math.MaxInt64},
	} {
		if got := MaxWeightBytes(c.cfg); got != c.want {
			t.Errorf("%s: got %d; want %d", c.name, got, c.want)
		}
	}
}

// allocated runs fn and returns the bytes it allocated.
func allocated(fn func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	fn()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// TestLoadWeightsRefusesHugeSparseFile extends the weights file of each layout (a shard for the sharded
// ones), without writing, to 64 GiB: LoadWeights refuses it before reading it, naming the path given.
func TestLoadWeightsRefusesHugeSparseFile(t *testing.T) {
	cfg, ws := goldenWeights(t)
	for i := range 4 {
		path := writeLayouts(t, ws)[i]
		grown := []string{path, filepath.Join(path, "model.safetensors"), filepath.Join(path, weightMapFile(1)),
			filepath.Join(filepath.Dir(path), weightMapFile(0))}[i]
		if err := os.Truncate(grown, 64<<30); err != nil {
			t.Skipf("no sparse file of 64 GiB here: %v", err)
		}
		var err error
		n := allocated(func() { _, err = LoadWeights(path, cfg, tensor.Float32) })
		if !errors.Is(err, safetensors.ErrTooLarge) || !strings.Contains(err.Error(), path) {
			t.Errorf("%s: got %v; want an ErrTooLarge error naming it", path, err)
		}
		if n > 1<<20 {
			t.Errorf("%s: allocated %d bytes; want under 1 MiB", path, n)
		}
	}
}

// TestAssign: a tensor of the weight's shape and the store's dtype is copied bit for bit; another shape
// (dimensions swapped), dtype or name is refused with the weight named, and the weight is left as it was.
func TestAssign(t *testing.T) {
	w := InitWeights(goldenConfig(), tensor.Float32, 1)
	name := "lm_head.weight"
	shape := w.Get(name).Shape()
	vals := make([]float32, w.Get(name).Len())
	for i := range vals {
		vals[i] = float32(i) * 0.5
	}
	before := append([]float32(nil), w.Get(name).Data().([]float32)...)
	for _, tc := range []struct {
		what string
		name string
		t    safetensors.Tensor
		want string // "" for success
	}{
		{"swapped", name, safetensors.FromFloat32([]int{shape[1], shape[0]}, vals), "shape"},
		{"float64", name, safetensors.FromFloat64(shape, make([]float64, len(vals))), "dtype F64"},
		{"unknown", "lm_head.bias", safetensors.FromFloat32([]int{1}, []float32{1}), "no such weight"},
	} {
		if err := w.Assign(tc.name, tc.t); err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), tc.name) {
			t.Errorf("%s: Assign = %v; want an error naming %s with %q", tc.what, err, tc.name, tc.want)
		}
	}
	if got := w.Get(name).Data().([]float32); !slices.Equal(got, before) {
		t.Error("a refused Assign changed the weight")
	}
	if err := w.Assign(name, safetensors.FromFloat32(shape, vals)); err != nil {
		t.Fatal(err)
	}
	if got := w.Get(name).Data().([]float32); !slices.Equal(got, vals) {
		t.Error("Assign did not copy the values")
	}
}
