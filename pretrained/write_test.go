package pretrained

import (
	"bytes"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"testing"

	"github.com/x448/float16"
	"gorgonia.org/tensor"

	"github.com/flextrain/flextrain/data/tokenizer"
	"github.com/flextrain/flextrain/model"
	"github.com/flextrain/flextrain/safetensors"
)

// flexConfig is the fixture model with FlexAttention in layers 1 and 2.
func flexConfig() model.Config {
	cfg := fixtureConfig
	cfg.Flex = model.FlexConfig{NSA: 1, Zoom: 2, SelectGrid: 4, Threshold: 40, Strategy: "topk", Ratio: 0.25}
	return cfg
}

// initTensors are seeded float32 weights of cfg, k/v_proj_hd included.
func initTensors(cfg model.Config) map[string]safetensors.Tensor {
	return model.InitWeights(cfg, tensor.Float32, 7).Tensors()
}

// writeOpts are the options of the round trips: the liuhaotian fixture's tokenizer and ids.
func writeOpts(dtype string) WriteOptions {
	return WriteOptions{DType: dtype, Tokenizer: llavaST, Tokens: &TokenIDs{1, 2, 0}, VisionTower: "openai/clip-vit-tiny"}
}

// TestWriteRoundTripFloat32: Write → Open gives the configuration, the FlexAttention settings and every
// tensor, bit for bit, and model.LoadWeights reads the folder too.
func TestWriteRoundTripFloat32(t *testing.T) {
	cfg, ts := flexConfig(), initTensors(flexConfig())
	dir := t.TempDir()
	if err := Write(dir, FormatLLaVA, cfg, ts, writeOpts("")); err != nil {
		t.Fatalf("Write: %v", err)
	}
	f := open(t, dir, Options{})
	if f.Layout != LayoutExport || f.Config != cfg || !f.FlexFromFile || f.TokenizerDir != dir || f.VisionTower != "openai/clip-vit-tiny" {
		t.Errorf("layout %s, config %+v (flex from file %v), tokenizer %q, tower %q; want %s, %+v, true, %q, openai/clip-vit-tiny",
			f.Layout, f.Config, f.FlexFromFile, f.TokenizerDir, f.VisionTower, LayoutExport, cfg, dir)
	}
	if got, want := sortedKeys(f.Tensors), sortedKeys(ts); !slices.Equal(got, want) {
		t.Fatalf("tensors %v\nwant %v", got, want)
	}
	for name, x := range ts {
		if !sameTensor(x, f.Tensors[name]) {
			t.Errorf("%s differs after the round trip", name)
		}
	}
	if _, err := model.LoadWeights(dir, cfg, tensor.Float32); err != nil {
		t.Errorf("model.LoadWeights: %v", err)
	}
	for _, name := range []string{"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"} {
		assertSameFile(t, filepath.Join(llavaST, name), filepath.Join(dir, name))
	}
	if g := readJSON(t, filepath.Join(dir, "generation_config.json")); g["bos_token_id"] != 1.0 || g["eos_token_id"] != 2.0 || g["pad_token_id"] != 0.0 {
		t.Errorf("generation_config.json = %v; want bos 1, eos 2, pad 0", g)
	}
}

func assertSameFile(t *testing.T, a, b string) {
	t.Helper()
	x, errA := os.ReadFile(a)
	y, errB := os.ReadFile(b)
	if errA != nil || errB != nil || !bytes.Equal(x, y) {
		t.Errorf("%s is not a copy of %s (%v, %v)", b, a, errA, errB)
	}
}

// TestWriteRounding: in float16 and bfloat16 every value read back is the input rounded to the nearest
// value of the dtype, ties to even, checked against a table of every finite value of the dtype; the
// configuration says the dtype.
func TestWriteRounding(t *testing.T) {
	cfg, ts := flexConfig(), initTensors(flexConfig())
	ts["model.norm.weight"] = safetensors.FromFloat32([]int{16}, roundingCases())
	for _, tt := range []struct {
		dtype  string
		st     safetensors.DType
		decode func(uint16) float32
	}{
		{"float16", safetensors.F16, func(b uint16) float32 { return float16.Frombits(b).Float32() }},
		{"bfloat16", safetensors.BF16, safetensors.BF16ToFloat32},
	} {
		t.Run(tt.dtype, func(t *testing.T) {
			dir := t.TempDir()
			if err := Write(dir, FormatLLaVA, cfg, ts, writeOpts(tt.dtype)); err != nil {
				t.Fatalf("Write: %v", err)
			}
			f := open(t, dir, Options{})
			if f.DType != tt.dtype {
				t.Errorf("torch_dtype %q; want %q", f.DType, tt.dtype)
			}
			table := finiteValues(tt.decode)
			for name, x := range ts {
				y := f.Tensors[name]
				if y.DType != tt.st {
					t.Fatalf("%s: dtype %s; want %s", name, y.DType, tt.st)
				}
				checkRounded(t, name, float32s(t, x), y.Data, table)
			}
		})
	}
}

// roundingCases are values that exercise the rounding: ties of both dtypes to both sides, float16
// subnormals, the largest finite float16, negative values.
func roundingCases() []float32 {
	bits := []uint32{0x3f808000, 0x3f818000, 0x3f80c000, 0xbf818000, 0x3f801000, 0x3f803000}
	out := []float32{1 + 1.0/2048, 1 + 3.0/2048, -(1 + 3.0/2048), 1e-6, -3e-7, 65504, 65519, 0, 1.0 / 3}
	for _, b := range bits {
		out = append(out, math.Float32frombits(b))
	}
	return append(out, 2.5e-8)
}

// rounded is one finite value of a 16-bit dtype and its bits.
type rounded struct {
	v    float64
	bits uint16
}

// finiteValues lists every finite value of a 16-bit dtype, sorted (−0 left out: it ties with +0).
func finiteValues(decode func(uint16) float32) []rounded {
	var out []rounded
	for b := 0; b < 1<<16; b++ {
		v := float64(decode(uint16(b)))
		if !math.IsNaN(v) && !math.IsInf(v, 0) && b != 0x8000 {
			out = append(out, rounded{v, uint16(b)})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].v < out[j].v })
	return out
}

// checkRounded checks that each stored value is the nearest to its input, ties to the even bit pattern.
func checkRounded(t *testing.T, name string, in []float32, data []byte, table []rounded) {
	t.Helper()
	for i, x := range in {
		got := uint16(data[2*i]) | uint16(data[2*i+1])<<8
		if want := nearest(float64(x), table); got != want && !(x == 0 && got&0x7fff == 0) {
			t.Errorf("%s[%d] = %v: stored %#04x, want %#04x", name, i, x, got, want)
			return
		}
	}
}

// nearest is x rounded to the table, ties to the even bit pattern.
func nearest(x float64, table []rounded) uint16 {
	i := sort.Search(len(table), func(i int) bool { return table[i].v >= x })
	if i == 0 {
		return table[0].bits
	}
	if i == len(table) {
		return table[i-1].bits
	}
	lo, hi := table[i-1], table[i]
	switch dl, dh := x-lo.v, hi.v-x; {
	case dl < dh:
		return lo.bits
	case dh < dl:
		return hi.bits
	case lo.bits%2 == 0:
		return lo.bits
	}
	return hi.bits
}

// TestWriteLLaVAHF: the llava-hf layout renames the tensors, pads the vocabulary with zero rows for
// "<image>" and "<pad>", names them in the tokenizer files, and reads back as the same model; writing a
// model read from llava-hf keeps its vocabulary and tensors, bit for bit.
func TestWriteLLaVAHF(t *testing.T) {
	cfg, ts := flexConfig(), initTensors(flexConfig())
	dir := t.TempDir()
	if err := Write(dir, FormatLLaVAHF, cfg, ts, writeOpts("")); err != nil {
		t.Fatalf("Write: %v", err)
	}
	f := open(t, dir, Options{})
	want := cfg
	want.Text.VocabSize = 192
	if f.Layout != LayoutLLaVAHF || f.Config != want || *f.HFTokens != (HFTokens{144, 145}) || f.Tokens.Pad != 145 {
		t.Errorf("layout %s, config %+v, llava-hf tokens %v, pad %d; want %s, %+v, {144 145}, 145", f.Layout, f.Config,
			f.HFTokens, f.Tokens.Pad, LayoutLLaVAHF, want)
	}
	for name, x := range ts {
		checkPadded(t, name, x, f.Tensors[name])
	}
	checkHFTokenizer(t, dir)
	again := t.TempDir()
	if err := Write(again, FormatLLaVAHF, f.Config, f.Tensors, WriteOptions{HFTokens: f.HFTokens, Tokenizer: dir}); err != nil {
		t.Fatalf("Write of the model read back: %v", err)
	}
	g := open(t, again, Options{})
	for name, x := range f.Tensors {
		if !sameTensor(x, g.Tensors[name]) {
			t.Errorf("%s changed when written again", name)
		}
	}
	assertSameFile(t, filepath.Join(dir, "tokenizer.json"), filepath.Join(again, "tokenizer.json"))
}

// checkPadded checks that y is x with zero rows appended (or x itself).
func checkPadded(t *testing.T, name string, x, y safetensors.Tensor) {
	t.Helper()
	if !bytes.Equal(y.Data[:len(x.Data)], x.Data) || y.DType != x.DType {
		t.Errorf("%s differs after the round trip", name)
	}
	if rest := y.Data[len(x.Data):]; len(rest) > 0 && (y.Shape[0] != 192 || slices.ContainsFunc(rest, func(b byte) bool { return b != 0 })) {
		t.Errorf("%s%v: the rows past 144 are not zero", name, y.Shape)
	}
}

// checkHFTokenizer checks that the tokenizer files name "<image>" and "<pad>", and that flextrain's tokenizer
// reads the result.
func checkHFTokenizer(t *testing.T, dir string) {
	t.Helper()
	if m := readJSON(t, filepath.Join(dir, "added_tokens.json")); m["<image>"] != 144.0 || m["<pad>"] != 145.0 {
		t.Errorf("added_tokens.json = %v", m)
	}
	for file, key := range map[string]string{"special_tokens_map.json": "pad_token", "tokenizer_config.json": "pad_token"} {
		if v := lookup(readJSON(t, filepath.Join(dir, file)), key); v != "<pad>" {
			t.Errorf("%s %s = %v; want <pad>", file, key, v)
		}
	}
	if v := lookup(readJSON(t, filepath.Join(dir, "tokenizer_config.json")), "added_tokens_decoder.144.content"); v != "<image>" {
		t.Errorf("tokenizer_config.json added_tokens_decoder[144] = %v; want <image>", v)
	}
	tok, err := tokenizer.Load(filepath.Join(dir, "tokenizer.json"))
	if err != nil {
		t.Fatalf("tokenizer.Load: %v", err)
	}
	if id, _ := tok.TokenID("<image>"); id != 144 || tok.PAD() != 145 {
		t.Errorf("<image> is %d and the pad id %d; want 144 and 145", id, tok.PAD())
	}
}

// TestWriteShards: a small shard size gives model-0000k-of-0000N files and an index whose total_size is
// their tensor bytes; a later write with one shard leaves model.safetensors alone, the stale shards removed.
func TestWriteShards(t *testing.T) {
	cfg, ts := flexConfig(), initTensors(flexConfig())
	dir := t.TempDir()
	o := writeOpts("")
	o.MaxShardBytes = 8 << 10
	if err := Write(dir, FormatLLaVA, cfg, ts, o); err != nil {
		t.Fatalf("Write: %v", err)
	}
	index := readJSON(t, filepath.Join(dir, SafetensorsIndex))
	var total int64
	for _, x := range ts {
		total += int64(len(x.Data))
	}
	shards, _ := filepath.Glob(filepath.Join(dir, "model-*-of-*.safetensors"))
	if len(shards) < 3 || lookup(index, "metadata.total_size") != float64(total) {
		t.Errorf("%d shards, total_size %v; want several, %d", len(shards), lookup(index, "metadata.total_size"), total)
	}
	for _, s := range shards {
		if st, err := os.Stat(s); err != nil || st.Size() > 8<<10+4<<10 {
			t.Errorf("shard %s: %v bytes", s, st.Size())
		}
	}
	if f := open(t, dir, Options{}); f.WeightsFile != filepath.Join(dir, SafetensorsIndex) || !sameTensor(f.Tensors["lm_head.weight"], ts["lm_head.weight"]) {
		t.Errorf("read from %s; want the index, and the same tensors", f.WeightsFile)
	}
	if err := Write(dir, FormatLLaVA, cfg, ts, writeOpts("")); err != nil {
		t.Fatalf("Write: %v", err)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "model*")); !slices.Equal(left, []string{filepath.Join(dir, SafetensorsSingle)}) {
		t.Errorf("weight files after the second write: %v; want model.safetensors alone", left)
	}
}

// TestWriteConfig: config.json has LLaVA-1.5's keys and FlexAttention's, in each format's spelling.
func TestWriteConfig(t *testing.T) {
	cfg, ts := flexConfig(), initTensors(flexConfig())
	for _, tt := range []struct {
		format Format
		keys   map[string]any
	}{
		{FormatLLaVA, map[string]any{"architectures": []any{"LlavaLlamaForCausalLM"}, "model_type": "llava",
			"mm_projector_type": "mlp2x_gelu", "mm_vision_select_layer": -2.0, "mm_vision_select_feature": "patch",
			"mm_vision_tower": "openai/clip-vit-tiny", "mm_hidden_size": 12.0, "mm_use_im_start_end": false,
			"mm_use_im_patch_token": false, "image_aspect_ratio": "pad", "torch_dtype": "bfloat16", "hidden_size": 16.0,
			"num_key_value_heads": 2.0, "vocab_size": 144.0, "pad_token_id": 0.0, "vision_config.image_size": 32.0,
			"flex.n_sa": 1.0, "flex.zoom": 2.0, "flex.select_grid": 4.0, "flex.threshold": 40.0, "flex.strategy": "topk",
			"flex.ratio": 0.25, "flex.hd_layers": []any{1.0, 2.0}, "flex.highres_size": 64.0, "extra.zoom_ratio": 2.0,
			"extra.lowres_size": 32.0, "flextrain.step": 5.0}},
		{FormatLLaVAHF, map[string]any{"architectures": []any{"LlavaForConditionalGeneration"}, "model_type": "llava",
			"image_token_index": 144.0, "pad_token_id": 145.0, "vision_feature_layer": -2.0, "vocab_size": 192.0,
			"vision_feature_select_strategy": "default", "projector_hidden_act": "gelu", "image_seq_length": 16.0,
			"text_config.vocab_size": 192.0, "text_config.model_type": "llama", "text_config.torch_dtype": "bfloat16",
			"vision_config.hidden_size": 12.0, "vision_config.hidden_act": "quick_gelu", "flex.n_sa": 1.0}},
	} {
		t.Run(string(tt.format), func(t *testing.T) {
			dir, o := t.TempDir(), writeOpts("bfloat16")
			o.Info = map[string]any{"step": 5}
			if err := Write(dir, tt.format, cfg, ts, o); err != nil {
				t.Fatalf("Write: %v", err)
			}
			m := readJSON(t, filepath.Join(dir, ConfigFile))
			for key, want := range tt.keys {
				if got := lookup(m, key); compact(got) != compact(want) {
					t.Errorf("%s = %v; want %v", key, compact(got), compact(want))
				}
			}
		})
	}
}

// TestWriteRefuses: what Write cannot write is refused before any file is, naming the cause.
func TestWriteRefuses(t *testing.T) {
	cfg := flexConfig()
	big := initTensors(cfg)
	big["model.norm.weight"] = safetensors.FromFloat32([]int{16}, append([]float32{1, 70000}, make([]float32, 14)...))
	wrong := initTensors(cfg)
	wrong["lm_head.weight"] = safetensors.FromFloat32([]int{16, 144}, make([]float32, 144*16))
	missing := initTensors(cfg)
	delete(missing, "model.norm.weight")
	for _, tt := range []struct {
		name   string
		format Format
		ts     map[string]safetensors.Tensor
		o      WriteOptions
		want   []string
	}{
		{"format", "gguf", initTensors(cfg), WriteOptions{}, []string{`format "gguf"`}},
		{"dtype", FormatLLaVA, initTensors(cfg), WriteOptions{DType: "float64"}, []string{`dtype "float64"`}},
		{"shape", FormatLLaVA, wrong, WriteOptions{}, []string{`"lm_head.weight": shape [16 144]`, "[144 16]"}},
		{"missing", FormatLLaVA, missing, WriteOptions{}, []string{"model.norm.weight is missing"}},
		{"overflow", FormatLLaVA, big, WriteOptions{DType: "float16"}, []string{"model.norm.weight", "element 1", "70000 is beyond the range of F16"}},
		{"hf tokens", FormatLLaVAHF, initTensors(cfg), WriteOptions{HFTokens: &HFTokens{144, 145}}, []string{"HFTokens"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "out")
			wantError(t, Write(dir, tt.format, cfg, tt.ts, tt.o), tt.want...)
			if _, err := os.Stat(filepath.Join(dir, ConfigFile)); err == nil {
				t.Errorf("a refused write left a config.json")
			}
		})
	}
}

// TestNaturalCompare: layer numbers are ordered as numbers.
func TestNaturalCompare(t *testing.T) {
	names := []string{"model.layers.10.x", "model.layers.2.x", "lm_head.weight", "model.layers.1.y", "model.layers.1.x"}
	slices.SortFunc(names, naturalCompare)
	want := []string{"lm_head.weight", "model.layers.1.x", "model.layers.1.y", "model.layers.2.x", "model.layers.10.x"}
	if !slices.Equal(names, want) {
		t.Errorf("sorted %v; want %v", names, want)
	}
}

// TestWritePlain: a plain write of a FlexAttention model, in either format, has no flex or extra block and
// no k/v_proj_hd tensor, and reads back as a base LLaVA (neutral flex settings, not from the file) whose
// other tensors are the model's.
func TestWritePlain(t *testing.T) {
	cfg, ts := flexConfig(), initTensors(flexConfig())
	for _, f := range []Format{FormatLLaVA, FormatLLaVAHF} {
		dir := t.TempDir()
		o := writeOpts("")
		o.Plain = true
		if err := Write(dir, f, cfg, ts, o); err != nil {
			t.Fatalf("%s: Write: %v", f, err)
		}
		c := readJSON(t, filepath.Join(dir, ConfigFile))
		if _, ok := c["flex"]; ok {
			t.Errorf("%s: config.json has a flex block", f)
		}
		if _, ok := c["extra"]; ok {
			t.Errorf("%s: config.json has an extra block", f)
		}
		back := open(t, dir, Options{})
		if back.FlexFromFile || len(hdLayers(back.Tensors)) != 0 {
			t.Errorf("%s: read back with flex from file %v, HR projections in layers %v; want neither", f, back.FlexFromFile, hdLayers(back.Tensors))
		}
		if back.Config.Text != cfg.Text && f == FormatLLaVA {
			t.Errorf("%s: decoder %+v; want %+v", f, back.Config.Text, cfg.Text)
		}
		for name, x := range withoutHR(ts) {
			if got, ok := back.Tensors[name]; !ok || (f == FormatLLaVA && !sameTensor(x, got)) {
				t.Errorf("%s: %s missing or changed", f, name)
			}
		}
	}
}
