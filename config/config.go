// Package config is a run's configuration: one typed Config read from YAML with Hugging Face Trainer and
// LLaVA key names, where an unknown or ill-typed key is an error naming it and its line, `--set key=value`
// overrides, validation with one error per bad key, the effective configuration as a table and as YAML
// (saved with every checkpoint), and the drift between two configurations that a resume refuses.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"path"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/flextrain/flextrain/data"
	"github.com/flextrain/flextrain/internal/fileio"
	"github.com/flextrain/flextrain/model"
	"github.com/flextrain/flextrain/optim"
)

// Config is the whole run configuration, read from a YAML file (configs/*.yaml) with Hugging Face Trainer and
// LLaVA spellings for the flat keys, a `flex:` map, a `model:` map with the architecture, and `trainable:` /
// `frozen:` lists of tensor-name patterns. Every key has a default (Defaults) except the architecture and the
// paths; Load applies defaults, then the file, then `--set key=value` overrides, then Validate.
type Config struct {
	OutputDir       string `yaml:"output_dir"`         // where checkpoints, logs and config.yaml go
	ModelNameOrPath string `yaml:"model_name_or_path"` // base weights; empty: random initialisation
	TokenizerPath   string `yaml:"tokenizer_path"`

	DataPath              string  `yaml:"data_path"`    // LLaVA JSON conversations
	ImageFolder           string  `yaml:"image_folder"` // `image` fields are relative to it
	EvalDataPath          string  `yaml:"eval_data_path"`
	ValSize               float64 `yaml:"val_size"` // held out of data_path: a fraction in [0, 1) or a count ≥ 1 (LLaMA-Factory)
	ModelMaxLength        int     `yaml:"model_max_length"`
	BadSamplePolicy       string  `yaml:"bad_sample_policy"` // skip or fail
	MaxBadFraction        float64 `yaml:"max_bad_fraction"`  // stop when more than this fraction was skipped
	GroupByModalityLength bool    `yaml:"group_by_modality_length"`
	DataloaderNumWorkers  int     `yaml:"dataloader_num_workers"`
	// ImageMaxPixels bounds one image: at most this many pixels in the square it is padded to, and at most
	// four bytes a pixel decoded. A larger image is a bad sample (image_too_large), refused on its header.
	ImageMaxPixels int `yaml:"image_max_pixels"`
	// MaxRecordBytes bounds one record's JSON text; a longer record is a bad sample (record_too_large),
	// never decoded nor tokenised.
	MaxRecordBytes int `yaml:"max_record_bytes"`
	// FeatureCache keeps the frozen vision tower's features of each image (by content) so epochs after the
	// first skip the tower: off, memory (a bounded in-memory cache) or disk (also output_dir/feature-cache,
	// zstd files that later runs reuse). It never applies while the tower trains. When the whole front is
	// frozen (tower, projector, embeddings, layers before n_sa) it keeps what the front computes for each
	// sample too, and those epochs start at layer n_sa.
	FeatureCache   string `yaml:"feature_cache"`
	FeatureCacheMB int    `yaml:"feature_cache_mb"` // the in-memory part's bound
	DType          string `yaml:"dtype"`            // float32 for training, float64 for numerical checks
	// Device is where the steps run: cpu, or cuda (cuda:N for the GPU of ordinal N) in a build with
	// -tags gpu. On a GPU the graphs, gradients and AdamW run in its memory (tf32 opts in to TF32 products).
	Device string `yaml:"device"`

	LearningRate              float64 `yaml:"learning_rate"`
	WeightDecay               float64 `yaml:"weight_decay"`
	AdamBeta1                 float64 `yaml:"adam_beta1"`
	AdamBeta2                 float64 `yaml:"adam_beta2"`
	AdamEpsilon               float64 `yaml:"adam_epsilon"`
	MaxGradNorm               float64 `yaml:"max_grad_norm"` // 0 disables clipping
	LRSchedulerType           string  `yaml:"lr_scheduler_type"`
	WarmupRatio               float64 `yaml:"warmup_ratio"`
	WarmupSteps               int     `yaml:"warmup_steps"` // > 0 wins over warmup_ratio, as in HF
	NumTrainEpochs            float64 `yaml:"num_train_epochs"`
	MaxSteps                  int     `yaml:"max_steps"` // > 0 wins over num_train_epochs, as in HF
	PerDeviceTrainBatchSize   int     `yaml:"per_device_train_batch_size"`
	GradientAccumulationSteps int     `yaml:"gradient_accumulation_steps"`

	LoggingSteps   int `yaml:"logging_steps"`
	EvalSteps      int `yaml:"eval_steps"` // 0: no evaluation during training
	SaveSteps      int `yaml:"save_steps"` // 0: save only at the end
	SaveTotalLimit int `yaml:"save_total_limit"`
	Seed           int `yaml:"seed"`

	Flex  Flex  `yaml:"flex"`
	Arch  Arch  `yaml:"model"`
	LLaVA LLaVA `yaml:",inline"` // LLaVA's own training keys (llava.go)

	// TrainablePatterns and FrozenPatterns are path.Match patterns over tensor names (docs/DESIGN.md §9); frozen wins.
	// Empty trainable patterns become DefaultTrainable when the configuration is loaded.
	TrainablePatterns []string `yaml:"trainable"`
	FrozenPatterns    []string `yaml:"frozen"`
}

// Flex is the `flex:` map: the model's FlexAttention settings plus the α warm-up of docs/DESIGN.md §9 and the view
// the run trains with: flex (FlexAttention), lr (LR tokens only, no HR: a LLaVA base model) or hd-seq.
type Flex struct {
	model.FlexConfig `yaml:",inline"`
	AlphaWarmupRatio float64 `yaml:"alpha_warmup_ratio"`
	View             string  `yaml:"view"`
}

// Arch is the `model:` map: the architecture, keyed exactly as model.VisionConfig and model.TextConfig.
type Arch struct {
	Vision model.VisionConfig `yaml:"vision"`
	Text   model.TextConfig   `yaml:"text"`
}

// Sentinel errors: every error Load returns for a key names it and wraps one of these.
var (
	ErrUnknownKey = errors.New("config: unknown config key")
	ErrBadValue   = errors.New("config: bad config value")
)

// Defaults is the configuration before any file: HF Trainer's and the official FlexAttention script's values
// (lr 2e-5, cosine, warmup_ratio 0.03, weight decay 0, seed 3407). The architecture, n_sa, select_grid and the
// paths have no default.
func Defaults() Config {
	return Config{
		ModelMaxLength: 2048, BadSamplePolicy: "skip", MaxBadFraction: 0.01, DType: "float32", Device: "cpu",
		ImageMaxPixels: data.DefaultImageMaxPixels, MaxRecordBytes: data.DefaultMaxRecordBytes,
		FeatureCache: "memory", FeatureCacheMB: 1024,
		LearningRate: 2e-5, AdamBeta1: 0.9, AdamBeta2: 0.999, AdamEpsilon: 1e-8, MaxGradNorm: 1,
		LRSchedulerType: "cosine", WarmupRatio: 0.03, NumTrainEpochs: 1, MaxSteps: -1,
		PerDeviceTrainBatchSize: 8, GradientAccumulationSteps: 1,
		LoggingSteps: 10, SaveSteps: 500, SaveTotalLimit: 2, Seed: 3407,
		Flex:  Flex{FlexConfig: model.FlexConfig{Zoom: 3, Threshold: 48, Strategy: "attention"}, AlphaWarmupRatio: 0.1, View: "flex"},
		LLaVA: llavaDefaults(),
		Arch: Arch{
			Vision: model.VisionConfig{LayerNormEps: 1e-5, SelectLayer: -2},
			Text:   model.TextConfig{RMSNormEps: 1e-5, RopeTheta: 10000},
		},
	}
}

// DefaultTrainable is docs/DESIGN.md §9's default: the FlexAttention layers n_sa…L−1 (with k/v_proj_hd),
// model.norm and lm_head.
func DefaultTrainable(nSA, numLayers int) []string {
	var ps []string
	for l := max(nSA, 0); l < min(numLayers, model.MaxLayers); l++ { // more layers fail validation
		ps = append(ps, fmt.Sprintf("model.layers.%d.*", l))
	}
	return append(ps, "model.norm.*", "lm_head.*")
}

// maxConfigBytes bounds a configuration file: the shipped ones are a few KB.
const maxConfigBytes = 1 << 20

// Load reads the YAML file at path over Defaults, applies overrides ("key=value", nested keys with
// dots: "flex.threshold=40"), fills DefaultTrainable when no trainable patterns are given, and validates.
// Unknown keys are errors (as yaml.v3's KnownFields(true) makes them), named with their full path and line:
//
//	config: unknown key: configs/tiny.yaml:12: flex.thresold
func Load(path string, overrides []string) (Config, error) {
	c := Defaults()
	data, err := fileio.ReadFile(path, maxConfigBytes)
	if err != nil {
		return c, fmt.Errorf("config: read config %s: %w", path, err)
	}
	if err := c.decode(data, path); err != nil {
		return c, err
	}
	for _, o := range overrides {
		if err := c.Set(o); err != nil {
			return c, err
		}
	}
	if err := c.AbsPaths(); err != nil {
		return c, fmt.Errorf("config: config %s: %w", path, err)
	}
	if err := c.fromFolder(); err != nil {
		return c, fmt.Errorf("config: config %s: %w", path, err)
	}
	c.fillDerived() // after the folder: the default trainable layers follow its number of layers
	if err := c.Validate(); err != nil {
		return c, fmt.Errorf("config: config %s is invalid:\n%w", path, err)
	}
	return c, nil
}

// Parse decodes configuration bytes read from src (a config.yaml a run or checkpoint saved) as
// Load decodes a file, without overrides.
func Parse(data []byte, src string) (Config, error) {
	c := Defaults()
	if err := c.decode(data, src); err != nil {
		return c, err
	}
	c.fillDerived()
	return c, c.Validate()
}

// fillDerived sets the defaults that depend on other keys.
func (c *Config) fillDerived() {
	if len(c.TrainablePatterns) == 0 {
		c.TrainablePatterns = DefaultTrainable(c.Flex.NSA, c.Arch.Text.NumLayers)
	}
	if c.FrozenPatterns == nil {
		c.FrozenPatterns = []string{} // so that YAML() round-trips to an equal Config
	}
}

// decode applies one YAML document read from src onto c, reporting every unknown or ill-typed key.
func (c *Config) decode(data []byte, src string) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err == io.EOF {
		return nil // an empty file keeps the defaults
	} else if err != nil {
		return fmt.Errorf("%w: %s: %w", ErrBadValue, src, err)
	}
	if err := dec.Decode(new(yaml.Node)); err != io.EOF {
		return fmt.Errorf("%w: %s: more than one YAML document", ErrBadValue, src)
	}
	return errors.Join(apply(doc.Content[0], reflect.ValueOf(c).Elem(), "", src)...)
}

// Set applies one "key=value" override, as `--set` does. The value is read as YAML and typed by the target
// field; a list key takes comma-separated items (`trainable=model.norm.*,lm_head.*`) or a YAML flow list.
func (c *Config) Set(override string) error {
	key, value, ok := strings.Cut(override, "=")
	if !ok || key == "" {
		return fmt.Errorf("%w: --set %q: want key=value", ErrBadValue, override)
	}
	v := reflect.ValueOf(c).Elem()
	if canon, ok := aliases[key]; ok {
		key = canon
	}
	for _, part := range strings.Split(key, ".") {
		f, ok := fieldsOf(v)[part]
		if !ok {
			return fmt.Errorf("%w: --set %s", ErrUnknownKey, key)
		}
		v = f
	}
	node, err := overrideNode(value, v.Kind() == reflect.Slice)
	if err != nil {
		return fmt.Errorf("%w: --set %s: %w", ErrBadValue, key, err)
	}
	return errors.Join(apply(node, v, key, "--set")...)
}

// overrideNode parses the value of a --set as a YAML node; list values may also be comma-separated.
func overrideNode(value string, list bool) (*yaml.Node, error) {
	if list && !strings.HasPrefix(strings.TrimSpace(value), "[") {
		n := &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq"}
		for _, item := range strings.Split(value, ",") {
			if item = strings.TrimSpace(item); item != "" {
				n.Content = append(n.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: item})
			}
		}
		return n, nil
	}
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(value), &doc); err != nil {
		return nil, err
	}
	if doc.Kind == 0 || len(doc.Content) == 0 { // "key=" is the empty string
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: ""}, nil
	}
	return doc.Content[0], nil
}

// apply decodes node into v, whose YAML key is key ("" at the top); src names the file ("--set" for an
// override) in errors. Struct values take a mapping whose keys must be their fields; leaves are decoded by
// yaml.v3, with integers required to be YAML integers.
func apply(node *yaml.Node, v reflect.Value, key, src string) []error {
	if node.Kind == yaml.AliasNode {
		node = node.Alias
	}
	at := func(line int) string {
		if src == "--set" {
			return "--set "
		}
		return fmt.Sprintf("%s:%d: ", src, line)
	}
	if v.Kind() != reflect.Struct {
		if err := decodeLeaf(node, v); err != nil {
			return []error{fmt.Errorf("%w: %s%s: %v", ErrBadValue, at(node.Line), key, err)}
		}
		return nil
	}
	if node.ShortTag() == "!!null" {
		return nil // "flex:" with nothing under it
	}
	if node.Kind != yaml.MappingNode {
		return []error{fmt.Errorf("%w: %s%s: want a map of keys, got %s", ErrBadValue, at(node.Line), orTop(key), describe(node))}
	}
	var errs []error
	fields, seen := fieldsOf(v), map[string]bool{}
	for i := 0; i+1 < len(node.Content); i += 2 {
		k, val := node.Content[i], node.Content[i+1]
		full := joinKey(key, k.Value)
		f, ok := fields[k.Value]
		if a, canon, isAlias := alias(v, k.Value); key == "" && isAlias {
			f, ok, full = a, true, canon
		}
		switch {
		case !ok:
			errs = append(errs, fmt.Errorf("%w: %s%s", ErrUnknownKey, at(k.Line), full))
		case seen[k.Value]:
			errs = append(errs, fmt.Errorf("%w: %s%s given twice", ErrBadValue, at(k.Line), full))
		default:
			errs = append(errs, apply(val, f, full, src)...)
		}
		seen[k.Value] = true
	}
	return errs
}

// decodeLeaf decodes a scalar or list node into v. A null is an error for scalars and an empty list for lists;
// a non-integer for an int field is an error (yaml.v3 alone would truncate 1.5 to 1).
func decodeLeaf(node *yaml.Node, v reflect.Value) error {
	tag := node.ShortTag()
	switch {
	case tag == "!!null" && v.Kind() == reflect.Slice:
		v.Set(reflect.Zero(v.Type()))
		return nil
	case tag == "!!null":
		return fmt.Errorf("needs a value (%s)", kindName[v.Kind()])
	case v.Kind() == reflect.Int && tag != "!!int":
		return fmt.Errorf("want an integer, got %s", describe(node))
	}
	if err := node.Decode(v.Addr().Interface()); err != nil {
		return fmt.Errorf("want %s, got %s", kindName[v.Kind()], describe(node))
	}
	return nil
}

var kindName = map[reflect.Kind]string{
	reflect.Int: "an integer", reflect.Float64: "a number", reflect.Bool: "true or false",
	reflect.String: "a string", reflect.Slice: "a list of strings",
}

func describe(n *yaml.Node) string {
	if n.Kind == yaml.ScalarNode {
		return strconv.Quote(n.Value)
	}
	return map[yaml.Kind]string{yaml.SequenceNode: "a list", yaml.MappingNode: "a map"}[n.Kind]
}

func joinKey(prefix, k string) string {
	if prefix == "" {
		return k
	}
	return prefix + "." + k
}

func orTop(key string) string {
	if key == "" {
		return "the top level"
	}
	return key
}

// fieldsOf maps the YAML keys of struct v to its (settable) fields, expanding inline structs. It is empty
// for anything but a struct.
func fieldsOf(v reflect.Value) map[string]reflect.Value {
	out := map[string]reflect.Value{}
	if v.Kind() != reflect.Struct {
		return out
	}
	for i := 0; i < v.NumField(); i++ {
		name, opts, _ := strings.Cut(v.Type().Field(i).Tag.Get("yaml"), ",")
		if strings.Contains(opts, "inline") {
			for k, f := range fieldsOf(v.Field(i)) {
				out[k] = f
			}
		} else if name != "" && name != "-" {
			out[name] = v.Field(i)
		}
	}
	return out
}

// flatten lists every key of c (nested keys joined with dots) with its value formatted exactly: floats in
// the shortest form that reads back to the same number, lists as [a, b].
func (c Config) flatten() map[string]string { return flattenValue(reflect.ValueOf(c)) }

// flattenValue is flatten for any struct of the configuration (the `model:` block, say).
func flattenValue(v reflect.Value) map[string]string {
	out := map[string]string{}
	var walk func(v reflect.Value, prefix string)
	walk = func(v reflect.Value, prefix string) {
		for k, f := range fieldsOf(v) {
			if f.Kind() == reflect.Struct {
				walk(f, joinKey(prefix, k))
			} else {
				out[joinKey(prefix, k)] = formatValue(f)
			}
		}
	}
	walk(v, "")
	return out
}

func formatValue(v reflect.Value) string {
	switch v.Kind() {
	case reflect.Float64:
		return strconv.FormatFloat(v.Float(), 'g', -1, 64)
	case reflect.String:
		if v.String() == "" {
			return `""`
		}
		return v.String()
	case reflect.Slice:
		return "[" + strings.Join(v.Interface().([]string), ", ") + "]"
	}
	return fmt.Sprint(v.Interface())
}

// Table is the effective configuration as an aligned two-column table, one key per line, sorted by key,
// for printing at the start of a run.
func (c Config) Table() string {
	kv := c.flatten()
	keys := make([]string, 0, len(kv))
	width := 0
	for k := range kv {
		keys = append(keys, k)
		width = max(width, len(k))
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "%-*s  %s\n", width, k, kv[k])
	}
	return b.String()
}

// YAML is the configuration as a YAML document that Load reads back to an equal Config: written to
// output_dir/config.yaml and into every checkpoint.
func (c Config) YAML() ([]byte, error) {
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2) // as configs/*.yaml
	if err := enc.Encode(c); err != nil {
		return nil, fmt.Errorf("config: config to YAML: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("config: config to YAML: %w", err)
	}
	return b.Bytes(), nil
}

// Model is the model's own configuration: the `model:` architecture with the `flex:` settings.
func (c Config) Model() model.Config {
	return model.Config{Vision: c.Arch.Vision, Text: c.Arch.Text, Flex: c.Flex.FlexConfig}
}

// Trainable reports whether the tensor called name trains: it matches a trainable pattern and no frozen one.
func (c Config) Trainable(name string) bool {
	return matchAny(c.TrainablePatterns, name) && !matchAny(c.FrozenPatterns, name)
}

func matchAny(patterns []string, name string) bool {
	for _, p := range patterns {
		if ok, _ := path.Match(p, name); ok {
			return true
		}
	}
	return false
}

// resumeAllowed are the keys that may change when a run resumes: schedule, length, logging, evaluation,
// saving and the device. Every other key defines the run (model shape, flex, what trains, seed, data and
// its order, batch, dtype, optimizer state meaning) and must not drift.
var resumeAllowed = map[string]bool{
	"learning_rate": true, "lr_scheduler_type": true, "warmup_ratio": true, "warmup_steps": true,
	"weight_decay": true, "max_grad_norm": true, "max_steps": true, "num_train_epochs": true,
	"logging_steps": true, "eval_steps": true, "save_steps": true, "save_total_limit": true,
	"output_dir": true, "eval_data_path": true, "dataloader_num_workers": true,
	"bad_sample_policy": true, "max_bad_fraction": true, "image_max_pixels": true, "max_record_bytes": true,
	"tf32": true, "lazy_preprocess": true, "report_to": true, "evaluation_strategy": true, "save_strategy": true,
	"per_device_eval_batch_size": true, "feature_cache": true, "feature_cache_mb": true, "device": true,
}

// Diff lists the keys whose values differ between a and b, sorted: shape holds those that define the run (a
// resume must refuse them), allowed those a resume may change (it should log them).
func Diff(a, b Config) (shape, allowed []string) {
	fa, fb := a.flatten(), b.flatten()
	for k, va := range fa {
		if va == fb[k] {
			continue
		}
		if resumeAllowed[k] {
			allowed = append(allowed, k)
		} else {
			shape = append(shape, k)
		}
	}
	sort.Strings(shape)
	sort.Strings(allowed)
	return shape, allowed
}

// Validate returns one error per bad key, joined, each naming the key; the model's own checks
// (model.Config.Validate) come first. A nil result means the configuration can run.
func (c Config) Validate() error {
	var errs []error
	if err := c.Model().Validate(); err != nil {
		errs = append(errs, err)
	}
	bad := func(key, format string, a ...any) {
		errs = append(errs, fmt.Errorf("%w: %s: %s", ErrBadValue, key, fmt.Sprintf(format, a...)))
	}
	c.validatePaths(bad)
	c.validateOptim(bad)
	c.validateSteps(bad)
	c.validateData(bad)
	c.validateLLaVA(bad)
	return errors.Join(errs...)
}

type badFunc func(key, format string, a ...any)

// MaxRunSteps is the most optimizer steps one run may plan (max_steps, or num_train_epochs of batches).
const MaxRunSteps = 1 << 31

// maxWorkers bounds dataloader_num_workers: each worker holds a decoded image and its resampled views, and
// no machine has the cores to use more.
const maxWorkers = 256

func (c Config) validatePaths(bad badFunc) {
	if c.OutputDir == "" {
		bad("output_dir", "must be set")
	}
	if c.DataPath == "" {
		bad("data_path", "must be set")
	}
	for _, k := range []struct {
		key      string
		patterns []string
	}{{"trainable", c.TrainablePatterns}, {"frozen", c.FrozenPatterns}} {
		for _, p := range k.patterns {
			if _, err := path.Match(p, ""); err != nil {
				bad(k.key, "pattern %q is malformed", p)
			}
		}
	}
}

func (c Config) validateOptim(bad badFunc) {
	positive := func(key string, v float64) {
		if !(v > 0) || math.IsInf(v, 0) {
			bad(key, "must be finite and > 0, got %g", v)
		}
	}
	positive("learning_rate", c.LearningRate)
	positive("adam_epsilon", c.AdamEpsilon)
	inRange("weight_decay", c.WeightDecay, 0, math.MaxFloat64, bad)
	inRange("max_grad_norm", c.MaxGradNorm, 0, math.MaxFloat64, bad)
	for _, b := range []struct {
		key string
		v   float64
	}{{"adam_beta1", c.AdamBeta1}, {"adam_beta2", c.AdamBeta2}} {
		if !(b.v >= 0 && b.v < 1) {
			bad(b.key, "must be in [0, 1), got %g", b.v)
		}
	}
	if !slices.Contains(optim.Schedules, c.LRSchedulerType) {
		bad("lr_scheduler_type", "%q is not one of %s", c.LRSchedulerType, strings.Join(optim.Schedules, ", "))
	}
	inRange("warmup_ratio", c.WarmupRatio, 0, 1, bad)
	inRange("flex.alpha_warmup_ratio", c.Flex.AlphaWarmupRatio, 0, 1, bad)
	if _, err := model.ParseView(c.Flex.View); err != nil || c.Flex.View == "" {
		bad("flex.view", "%q is not flex, lr or hd-seq", c.Flex.View)
	}
	if c.DType != "float32" && c.DType != "float64" {
		bad("dtype", "%q is not float32 or float64", c.DType)
	}
	c.validateDevice(bad)
}

// validateDevice refuses a device that is not cpu, cuda or cuda:N, and what a GPU does not run yet.
func (c Config) validateDevice(bad badFunc) {
	d, err := ParseDevice(c.Device)
	switch {
	case err != nil:
		bad("device", "%v", err)
	case !d.CUDA:
	case c.DType != "float32":
		bad("device", "%s trains in float32, got dtype %s", c.Device, c.DType)
	}
}

// OnGPU reports whether the run's steps run on a GPU (device cuda or cuda:N; the key is validated).
func (c Config) OnGPU() bool {
	d, _ := ParseDevice(c.Device)
	return d.CUDA
}

// Device is where a run's steps run: the CPU, or the CUDA GPU of ordinal Ordinal.
type Device struct {
	CUDA    bool
	Ordinal int
}

// ParseDevice reads cpu, cuda (the GPU of ordinal 0) or cuda:N.
func ParseDevice(s string) (Device, error) {
	switch {
	case s == "cpu":
		return Device{}, nil
	case s == "cuda":
		return Device{CUDA: true}, nil
	case strings.HasPrefix(s, "cuda:"):
		n, err := strconv.Atoi(s[len("cuda:"):])
		if err != nil || n < 0 || n > 1<<10 {
			return Device{}, fmt.Errorf("%q: the GPU's ordinal after cuda: is a number ≥ 0", s)
		}
		return Device{CUDA: true, Ordinal: n}, nil
	}
	return Device{}, fmt.Errorf("%q is not cpu, cuda or cuda:N", s)
}

// inRange reports v outside [lo, hi] (NaN included).
func inRange(key string, v, lo, hi float64, bad badFunc) {
	if !(v >= lo && v <= hi) {
		bad(key, "must be in [%g, %g], got %g", lo, hi, v)
	}
}

func (c Config) validateSteps(bad badFunc) {
	atLeast := func(key string, v, lo int) {
		if v < lo {
			bad(key, "must be ≥ %d, got %d", lo, v)
		}
	}
	atLeast("warmup_steps", c.WarmupSteps, 0)
	atLeast("per_device_train_batch_size", c.PerDeviceTrainBatchSize, 1)
	atLeast("gradient_accumulation_steps", c.GradientAccumulationSteps, 1)
	atLeast("logging_steps", c.LoggingSteps, 1)
	atLeast("eval_steps", c.EvalSteps, 0)
	atLeast("save_steps", c.SaveSteps, 0)
	atLeast("save_total_limit", c.SaveTotalLimit, 2) // keep at least the newest and the one before it
	atLeast("max_steps", c.MaxSteps, -1)
	if c.MaxSteps > MaxRunSteps {
		bad("max_steps", "%d is past the most one run may take, %d", c.MaxSteps, MaxRunSteps)
	}
	if c.MaxSteps <= 0 && !(c.NumTrainEpochs > 0 && !math.IsInf(c.NumTrainEpochs, 0)) {
		bad("num_train_epochs", "must be finite and > 0 when max_steps is not set, got %g", c.NumTrainEpochs)
	}
}

func (c Config) validateData(bad badFunc) {
	if c.ModelMaxLength < 1 {
		bad("model_max_length", "must be ≥ 1, got %d", c.ModelMaxLength)
	}
	if !(c.ValSize >= 0) || math.IsInf(c.ValSize, 0) || (c.ValSize >= 1 && c.ValSize != math.Trunc(c.ValSize)) {
		bad("val_size", "must be a fraction in [0, 1) or a whole count, got %g", c.ValSize)
	}
	if c.ValSize > 0 && c.EvalDataPath != "" {
		bad("val_size", "give val_size or eval_data_path, not both")
	}
	if c.EvalSteps > 0 && c.ValSize == 0 && c.EvalDataPath == "" {
		bad("eval_steps", "evaluation needs val_size or eval_data_path")
	}
	if _, err := EvalAlpha(c.Flex.View); c.EvalSteps > 0 && err != nil {
		bad("eval_steps", "%v", err)
	}
	if c.BadSamplePolicy != "skip" && c.BadSamplePolicy != "fail" {
		bad("bad_sample_policy", "%q is not skip or fail", c.BadSamplePolicy)
	}
	inRange("max_bad_fraction", c.MaxBadFraction, 0, 1, bad)
	if c.ImageMaxPixels < 1 || c.ImageMaxPixels > data.MaxImagePixels {
		bad("image_max_pixels", "must be in 1…%d, got %d", data.MaxImagePixels, c.ImageMaxPixels)
	}
	if c.MaxRecordBytes < 1 {
		bad("max_record_bytes", "must be ≥ 1, got %d", c.MaxRecordBytes)
	}
	if c.DataloaderNumWorkers < 0 || c.DataloaderNumWorkers > maxWorkers {
		bad("dataloader_num_workers", "must be in 0…%d, got %d", maxWorkers, c.DataloaderNumWorkers)
	}
	if c.FeatureCache != "off" && c.FeatureCache != "memory" && c.FeatureCache != "disk" {
		bad("feature_cache", "%q is not off, memory or disk", c.FeatureCache)
	}
	if c.FeatureCacheMB < 1 {
		bad("feature_cache_mb", "must be ≥ 1, got %d", c.FeatureCacheMB)
	}
}
