package model

import (
	"errors"
	"fmt"
	"maps"
	"math"
	"math/bits"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"gorgonia.org/tensor"

	"github.com/flextrain/flextrain/safetensors"
)

// VisionPrefix is the name prefix of every vision-tower weight (docs/DESIGN.md §3), as in the LLaVA-1.5 checkpoints.
const VisionPrefix = "model.vision_tower.vision_tower.vision_model."

// initKind says how InitWeights fills a weight, and whether loading may derive it.
type initKind int

const (
	initNormal initKind = iota // N(0, 0.02): matrices, embeddings
	initOnes                   // norm weights
	initZeros                  // biases
	initCopy                   // a copy of another weight (k_proj_hd, v_proj_hd: docs/DESIGN.md §7)
)

// weightSpec is one weight of the model: its name, shape and initialisation.
type weightSpec struct {
	name  string
	shape []int
	init  initKind
	from  string // for initCopy, the weight it copies
}

// specList accumulates the weight specs in a fixed order (the order InitWeights draws them in).
type specList []weightSpec

func (s *specList) add(name string, kind initKind, shape ...int) {
	*s = append(*s, weightSpec{name: name, shape: shape, init: kind})
}

// linear adds a [out, in] matrix and, with bias, an [out] bias.
func (s *specList) linear(prefix string, out, in int, bias bool) {
	s.add(prefix+".weight", initNormal, out, in)
	if bias {
		s.add(prefix+".bias", initZeros, out)
	}
}

// norm adds a [dim] norm weight and, for LayerNorm, an [dim] bias.
func (s *specList) norm(prefix string, dim int, bias bool) {
	s.add(prefix+".weight", initOnes, dim)
	if bias {
		s.add(prefix+".bias", initZeros, dim)
	}
}

// weightSpecs lists every weight of the model of cfg (docs/DESIGN.md §3, §4, §6, §7).
func weightSpecs(cfg Config) []weightSpec {
	var s specList
	s.visionTower(cfg.Vision, cfg.gridOrZero())
	d := cfg.Text.HiddenSize
	s.linear("model.mm_projector.0", d, cfg.Vision.HiddenSize, true)
	s.linear("model.mm_projector.2", d, d, true)
	s.decoder(cfg.Text, cfg.Flex.NSA)
	return s
}

// visionTower adds the CLIP ViT weights; g is the LR grid side. post_layernorm is not used, so not listed.
func (s *specList) visionTower(v VisionConfig, g int) {
	c, p := v.HiddenSize, VisionPrefix
	s.add(p+"embeddings.class_embedding", initNormal, c)
	s.add(p+"embeddings.patch_embedding.weight", initNormal, c, 3, v.PatchSize, v.PatchSize)
	s.add(p+"embeddings.position_embedding.weight", initNormal, g*g+1, c)
	s.norm(p+"pre_layrnorm", c, true)
	for i := 0; i < v.NumLayers; i++ {
		l := fmt.Sprintf("%sencoder.layers.%d.", p, i)
		s.norm(l+"layer_norm1", c, true)
		for _, proj := range []string{"q_proj", "k_proj", "v_proj", "out_proj"} {
			s.linear(l+"self_attn."+proj, c, c, true)
		}
		s.norm(l+"layer_norm2", c, true)
		s.linear(l+"mlp.fc1", v.IntermediateSize, c, true)
		s.linear(l+"mlp.fc2", c, v.IntermediateSize, true)
	}
}

// decoder adds the LLaMA weights, with the two HR projections in every layer from nSA on.
func (s *specList) decoder(t TextConfig, nSA int) {
	d, f := t.HiddenSize, t.IntermediateSize
	s.add("model.embed_tokens.weight", initNormal, t.VocabSize, d)
	for l := 0; l < t.NumLayers; l++ {
		p := fmt.Sprintf("model.layers.%d.", l)
		s.norm(p+"input_layernorm", d, false)
		for _, proj := range []string{"q_proj", "k_proj", "v_proj", "o_proj"} {
			s.linear(p+"self_attn."+proj, d, d, false)
		}
		if l >= nSA {
			for _, proj := range []string{"k_proj", "v_proj"} {
				*s = append(*s, weightSpec{name: p + "self_attn." + proj + "_hd.weight", shape: []int{d, d},
					init: initCopy, from: p + "self_attn." + proj + ".weight"})
			}
		}
		s.norm(p+"post_attention_layernorm", d, false)
		s.linear(p+"mlp.gate_proj", f, d, false)
		s.linear(p+"mlp.up_proj", f, d, false)
		s.linear(p+"mlp.down_proj", d, f, false)
	}
	s.norm("model.norm", d, false)
	s.linear("lm_head", t.VocabSize, d, false)
}

// Shapes lists every weight the model of cfg has, name → shape: the vision tower, the projector, the
// embeddings, every decoder layer (with k_proj_hd/v_proj_hd for layers ≥ n_sa), model.norm and lm_head.
// The names are docs/DESIGN.md's, which are those of the LLaVA-1.5 checkpoints.
func Shapes(cfg Config) map[string][]int {
	specs := weightSpecs(cfg)
	out := make(map[string][]int, len(specs))
	for _, sp := range specs {
		out[sp.name] = append([]int(nil), sp.shape...)
	}
	return out
}

// Weights is the named weight store of one model: every weight of Shapes(cfg) as a *tensor.Dense of one
// dtype (Float32 or Float64), or, for frozen matrices loaded by FromTensorsHalf, as the file's 16-bit values
// (Half). Get returns the stored tensor itself, so the training loop updates it in place; Clone gives an
// independent copy. A Weights is not safe for concurrent mutation.
type Weights struct {
	cfg     Config
	dtype   tensor.Dtype
	tensors map[string]*tensor.Dense
	half    map[string]halfWeight // frozen weights kept in 16 bits; never in tensors too
	derived []string
}

// checkStore refuses an invalid configuration or a dtype the store cannot hold.
func checkStore(cfg Config, dt tensor.Dtype) error {
	if dt != tensor.Float32 && dt != tensor.Float64 {
		return fmt.Errorf("model: weights: dtype %v: want float32 or float64", dt)
	}
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("model: weights: %w", err)
	}
	return nil
}

// FromTensors builds the store of the model of cfg from named tensors, converting F64/F32/F16/BF16 to dt.
// It reports every problem at once (errors.Join, sorted by tensor name), each naming the tensor: a missing
// weight (with the shape wanted), an unexpected one, a wrong shape (both shapes), a non-float dtype, a NaN
// or Inf. An absent k_proj_hd/v_proj_hd of a FlexAttention layer is not a problem: it is initialised as a
// copy of that layer's k_proj/v_proj (docs/DESIGN.md §7) and listed by Derived.
func FromTensors(cfg Config, dt tensor.Dtype, ts map[string]safetensors.Tensor) (*Weights, error) {
	return fromTensors(cfg, dt, ts, func(string, safetensors.Tensor) bool { return false })
}

// F32 is the element type of float32 stores.
var F32 = tensor.Float32

// fromTensors is FromTensors keeping in 16 bits the tensors that keep16 picks.
func fromTensors(cfg Config, dt tensor.Dtype, ts map[string]safetensors.Tensor, keep16 func(string, safetensors.Tensor) bool) (*Weights, error) {
	if err := checkStore(cfg, dt); err != nil {
		return nil, err
	}
	w := &Weights{cfg: cfg, dtype: dt, tensors: map[string]*tensor.Dense{}, half: map[string]halfWeight{}}
	var probs problems
	specs := weightSpecs(cfg)
	known := make(map[string]bool, len(specs))
	for _, sp := range specs {
		known[sp.name] = true
		t, ok := ts[sp.name]
		switch {
		case !ok && sp.init != initCopy:
			probs.add(sp.name, "missing, want shape %v", sp.shape)
		case ok && dt == F32 && keep16(sp.name, t):
			h, err := keepHalf(sp.shape, t)
			probs.addErr(sp.name, err)
			if err == nil {
				w.half[sp.name] = h
			}
		case ok:
			d, err := denseFrom(sp.shape, t, dt)
			probs.addErr(sp.name, err)
			if err == nil {
				w.tensors[sp.name] = d
			}
		}
	}
	for name, t := range ts {
		if !known[name] {
			probs.addErr(name, unexpected(name, t, cfg.Flex.NSA))
		}
	}
	if err := probs.err(); err != nil {
		return nil, err
	}
	w.copyInit(specs, func(name, from string) bool { return keep16(name, ts[from]) })
	return w, nil
}

// CheckTensors checks named tensors that are to enter the model of cfg by another way than FromTensors (a
// checkpoint's, which the trainer copies into its store) against the model's weights: every dimension, not
// only their product, so that a matrix stored transposed is refused. It returns one error listing, sorted by
// name, each tensor whose shape differs (`tensor "lm_head.weight": shape [64 144], the model has [144 64]`)
// and each one the model does not have, or nil. A weight absent from ts is no problem here, and dtypes and
// values are the caller's to check.
func CheckTensors(cfg Config, ts map[string]safetensors.Tensor) error {
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("model: check tensors: %w", err)
	}
	shapes := Shapes(cfg)
	var probs problems
	for name, t := range ts {
		if want, ok := shapes[name]; !ok {
			probs.addErr(name, unexpected(name, t, cfg.Flex.NSA))
		} else {
			probs.addErr(name, checkShape(t.Shape, want))
		}
	}
	return probs.err()
}

// checkShape refuses a tensor shape other than the model's, naming both.
func checkShape(got, want []int) error {
	if !slices.Equal(got, want) {
		return fmt.Errorf("shape %v, the model has %v", got, want)
	}
	return nil
}

// unexpected reports a tensor the model has no weight for.
func unexpected(name string, t safetensors.Tensor, nSA int) error {
	return fmt.Errorf("unexpected tensor (%s%v): the model has no such weight%s",
		t.DType, t.Shape, unexpectedHint(name, nSA))
}

var hrName = regexp.MustCompile(`^model\.layers\.(\d+)\.self_attn\.[kv]_proj_hd\.weight$`)

// IsHRProjection says whether name is an HR projection's weight (k_proj_hd or v_proj_hd of some layer).
func IsHRProjection(name string) bool { return hrName.MatchString(name) }

// HRLayer reports whether name is an HR projection's weight (model.layers.l.self_attn.k_proj_hd.weight or
// v_proj_hd), and its layer l (−1 when the number does not fit an int).
func HRLayer(name string) (int, bool) {
	m := hrName.FindStringSubmatch(name)
	if m == nil {
		return 0, false
	}
	l, err := strconv.Atoi(m[1])
	if err != nil {
		l = -1
	}
	return l, true
}

// unexpectedHint explains an HR projection found on a plain layer.
func unexpectedHint(name string, nSA int) string {
	if IsHRProjection(name) {
		return fmt.Sprintf(": layers before n_sa = %d are plain and have no HR projections", nSA)
	}
	return ""
}

// copyInit fills every absent initCopy weight with a copy of its source: the source's 16 bits themselves
// (shared: neither changes) when the source is kept in 16 bits and keep16 picks the copy too (given its
// name and the source's), else a float32 copy.
func (w *Weights) copyInit(specs []weightSpec, keep16 func(name, from string) bool) {
	for _, sp := range specs {
		if sp.init != initCopy || w.has(sp.name) || !w.has(sp.from) {
			continue
		}
		h, isHalf := w.half[sp.from]
		switch {
		case isHalf && keep16(sp.name, sp.from):
			w.half[sp.name] = h
		case isHalf:
			v, _ := h.widenedTensor().Float32s()
			w.tensors[sp.name] = tensor.New(tensor.WithShape(h.shape...), tensor.WithBacking(v))
		default:
			w.tensors[sp.name] = w.tensors[sp.from].Clone().(*tensor.Dense)
		}
		w.derived = append(w.derived, sp.name)
	}
	sort.Strings(w.derived)
}

// has reports whether the store holds the weight called name, in either precision.
func (w *Weights) has(name string) bool {
	_, isHalf := w.half[name]
	return isHalf || w.tensors[name] != nil
}

// denseFrom converts a file tensor of the wanted shape to a dense tensor of dtype dt, refusing non-floats,
// other shapes and non-finite values.
func denseFrom(shape []int, t safetensors.Tensor, dt tensor.Dtype) (*tensor.Dense, error) {
	if !t.DType.IsFloat() {
		return nil, fmt.Errorf("dtype %s is not a floating-point type", t.DType)
	}
	if err := checkShape(t.Shape, shape); err != nil {
		return nil, err
	}
	if dt == tensor.Float32 {
		v, err := t.Float32s()
		if err != nil {
			return nil, err
		}
		return newDense(shape, v, "float32")
	}
	v, err := t.Float64s()
	if err != nil {
		return nil, err
	}
	return newDense(shape, v, "float64")
}

// newDense wraps finite values in a dense tensor, or names the first non-finite one.
func newDense[T float32 | float64](shape []int, v []T, kind string) (*tensor.Dense, error) {
	for i, x := range v {
		if f := float64(x); math.IsNaN(f) || math.IsInf(f, 0) {
			return nil, fmt.Errorf("element %d is %v (as %s): weights must be finite", i, x, kind)
		}
	}
	return tensor.New(tensor.WithShape(shape...), tensor.WithBacking(v)), nil
}

// problems collects per-tensor errors so that all are reported at once, sorted by tensor name.
type problems []struct {
	name string
	err  error
}

func (p *problems) add(name, format string, a ...any) {
	p.addErr(name, fmt.Errorf(format, a...))
}

func (p *problems) addErr(name string, err error) {
	if err != nil {
		*p = append(*p, struct {
			name string
			err  error
		}{name, err})
	}
}

// err joins the problems, sorted by tensor name, or returns nil.
func (p problems) err() error {
	sort.SliceStable(p, func(i, j int) bool { return p[i].name < p[j].name })
	errs := make([]error, len(p))
	for i, q := range p {
		errs[i] = fmt.Errorf("model: weights: tensor %q: %w", q.name, q.err)
	}
	return errors.Join(errs...)
}

// LoadWeights reads the weights of the model of cfg into a store of dtype dt. path is a .safetensors file,
// a model.safetensors.index.json (sharded), or a folder holding exactly one of those two (the index, or
// model.safetensors). Only regular files are read (a FIFO or a link to /dev/zero is refused at once), and
// the file, or the shards together, may hold at most MaxWeightBytes(cfg) bytes: a larger one is refused,
// with an error wrapping safetensors.ErrTooLarge, before it is read. Every tensor in the files must be a
// weight of the model (FromTensors): nothing is ignored, so a file that also holds other tensors is refused.
func LoadWeights(path string, cfg Config, dt tensor.Dtype) (*Weights, error) {
	if err := checkStore(cfg, dt); err != nil {
		return nil, fmt.Errorf("model: load weights %s: %w", path, err)
	}
	f, err := readWeightFile(path, MaxWeightBytes(cfg))
	if err != nil {
		return nil, fmt.Errorf("model: load weights %s: %w", path, err)
	}
	w, err := FromTensors(cfg, dt, f.Tensors)
	if err != nil {
		return nil, fmt.Errorf("model: load weights %s: %w", path, err)
	}
	return w, nil
}

// MaxWeightBytes is the most bytes the weight files of the model of cfg can hold, the bound LoadWeights
// reads them within: every weight of Shapes(cfg) at 8 bytes an element (F64, the widest dtype FromTensors
// accepts), an 8-byte header length for each (no checkpoint has more shards than weights), and
// safetensors.MaxHeaderSize for the JSON headers of all the files together (real ones take a few KiB each;
// an allowance per shard would let a crafted index of many shards claim many times as much). It saturates
// at math.MaxInt64, which a configuration that Validate accepts but no machine could hold reaches.
func MaxWeightBytes(cfg Config) int64 {
	total := uint64(safetensors.MaxHeaderSize)
	for _, sp := range weightSpecs(cfg) {
		n := uint64(8)
		for _, d := range sp.shape {
			n = satMul(n, uint64(max(d, 0)))
		}
		total = satAdd(total, satAdd(n, 8))
	}
	return int64(total)
}

// satMul multiplies, saturating at math.MaxInt64.
func satMul(a, b uint64) uint64 {
	hi, lo := bits.Mul64(a, b)
	if hi != 0 || lo > math.MaxInt64 {
		return math.MaxInt64
	}
	return lo
}

// satAdd adds two numbers of at most math.MaxInt64, saturating there.
func satAdd(a, b uint64) uint64 { return min(a+b, math.MaxInt64) }

// readWeightFile resolves path (file, index or folder) and reads it within limit bytes.
func readWeightFile(path string, limit int64) (*safetensors.File, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !st.IsDir() {
		if strings.HasSuffix(path, ".json") {
			return safetensors.ReadShardedLimit(path, limit)
		}
		return safetensors.ReadFileLimit(path, limit)
	}
	index, single := filepath.Join(path, safetensors.IndexName), filepath.Join(path, "model.safetensors")
	hasIndex, hasSingle := exists(index), exists(single)
	switch {
	case hasIndex && hasSingle:
		return nil, fmt.Errorf("folder holds both %s and model.safetensors: name the one to load", safetensors.IndexName)
	case hasIndex:
		return safetensors.ReadShardedLimit(index, limit)
	case hasSingle:
		return safetensors.ReadFileLimit(single, limit)
	}
	return nil, fmt.Errorf("folder holds neither %s nor model.safetensors", safetensors.IndexName)
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// Get returns the weight called name (the stored tensor, not a copy), or nil if the model has none or
// keeps it in 16 bits (Half).
func (w *Weights) Get(name string) *tensor.Dense { return w.tensors[name] }

// Names returns every weight name, sorted, those kept in 16 bits included.
func (w *Weights) Names() []string {
	return slices.Sorted(maps.Keys(w.shapes()))
}

// shapes maps every weight the store holds to its shape.
func (w *Weights) shapes() map[string][]int {
	out := make(map[string][]int, len(w.tensors)+len(w.half))
	for name, d := range w.tensors {
		out[name] = d.Shape()
	}
	for name, h := range w.half {
		out[name] = h.shape
	}
	return out
}

// Config returns the configuration the store was built for.
func (w *Weights) Config() Config { return w.cfg }

// Dtype returns the element type of every weight: tensor.Float32 or tensor.Float64.
func (w *Weights) Dtype() tensor.Dtype { return w.dtype }

// Derived lists, sorted, the weights made by copying another (k_proj_hd/v_proj_hd from k_proj/v_proj)
// rather than read: on load, those the file lacked, so that callers can log it; after InitWeights, all of them.
func (w *Weights) Derived() []string { return append([]string(nil), w.derived...) }

// Clone returns a deep copy: changing one store's tensors never changes the other's.
func (w *Weights) Clone() *Weights {
	c := &Weights{cfg: w.cfg, dtype: w.dtype, tensors: make(map[string]*tensor.Dense, len(w.tensors)),
		half: maps.Clone(w.half), derived: w.Derived()} // 16-bit weights never change: shared
	for name, d := range w.tensors {
		c.tensors[name] = d.Clone().(*tensor.Dense)
	}
	return c
}

// Tensors converts the store to safetensors tensors of the store's dtype (F32 or F64), for writing out.
// The data is copied, 16-bit weights widened.
func (w *Weights) Tensors() map[string]safetensors.Tensor {
	out := make(map[string]safetensors.Tensor, len(w.tensors)+len(w.half))
	for _, name := range w.Names() {
		out[name] = w.Tensor(name)
	}
	return out
}

// Tensor converts one weight as Tensors does (the data copied; a 16-bit weight widened to the store's F32);
// a name the store lacks gives the zero Tensor.
func (w *Weights) Tensor(name string) safetensors.Tensor {
	if h, ok := w.half[name]; ok {
		return h.widenedTensor()
	}
	d := w.tensors[name]
	if d == nil {
		return safetensors.Tensor{}
	}
	switch v := d.Data().(type) {
	case []float32:
		return safetensors.FromFloat32(d.Shape(), v)
	case []float64:
		return safetensors.FromFloat64(d.Shape(), v)
	}
	return safetensors.Tensor{}
}

// Assign copies t into the weight called name, which the model must have: t must have the weight's shape
// (every dimension) and the store's dtype (F32 or F64), so that the values keep their bits. A checkpoint's
// trained tensors enter a model this way.
func (w *Weights) Assign(name string, t safetensors.Tensor) error {
	d := w.tensors[name]
	if _, ok := w.half[name]; ok {
		return fmt.Errorf("model: assign %s: the weight is frozen, kept in 16 bits", name)
	}
	if d == nil {
		return fmt.Errorf("model: assign %s: the model has no such weight", name)
	}
	if err := checkShape(t.Shape, d.Shape()); err != nil {
		return fmt.Errorf("model: assign %s: %w", name, err)
	}
	switch dst := d.Data().(type) {
	case []float32:
		return assignValues(dst, t, "F32", name, t.Float32s)
	case []float64:
		return assignValues(dst, t, "F64", name, t.Float64s)
	}
	return fmt.Errorf("model: assign %s: unsupported store type %v", name, w.dtype)
}

// assignValues copies the values of t, which must be of dtype want, into dst.
func assignValues[T float32 | float64](dst []T, t safetensors.Tensor, want safetensors.DType, name string, values func() ([]T, error)) error {
	if t.DType != want {
		return fmt.Errorf("model: assign %s: dtype %s, the model's is %s", name, t.DType, want)
	}
	v, err := values()
	if err != nil {
		return fmt.Errorf("model: assign %s: %w", name, err)
	}
	if len(v) != len(dst) {
		return fmt.Errorf("model: assign %s: %d values, the weight has %d", name, len(v), len(dst))
	}
	copy(dst, v)
	return nil
}

// LoadOrInit is the base model of a run: the weights at path (LoadWeights) or, when path is empty, the
// seeded initialisation (InitWeights) that a model trained from scratch starts from.
func LoadOrInit(path string, cfg Config, dt tensor.Dtype, seed uint64) (*Weights, error) {
	if path != "" {
		return LoadWeights(path, cfg, dt)
	}
	if err := checkStore(cfg, dt); err != nil {
		return nil, fmt.Errorf("model: initialise: %w", err)
	}
	return InitWeights(cfg, dt, seed), nil
}
