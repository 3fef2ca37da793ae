package pretrained

import (
	"fmt"
	"path/filepath"

	"github.com/flextrain/flextrain/model"
	"github.com/flextrain/flextrain/safetensors"
)

// Layout is how a folder spells its configuration and its tensors' names.
type Layout string

// The layouts Open reads; Write writes LayoutLLaVA (with FlexAttention's keys) and LayoutLLaVAHF.
const (
	LayoutLLaVA   Layout = "llava"     // liuhaotian/llava-v1.5-7b: LlavaLlamaForCausalLM
	LayoutLLaVAHF Layout = "llava-hf"  // llava-hf/llava-1.5-7b-hf: LlavaForConditionalGeneration
	LayoutCLIP    Layout = "clip"      // openai/clip-vit-large-patch14-336: CLIPModel, a vision tower only
	LayoutExport  Layout = "flextrain" // flextrain's export: LayoutLLaVA plus its flex block
)

// ConfigFile is the name of every layout's configuration.
const ConfigFile = "config.json"

// Options are the caller's choices for Open.
type Options struct {
	// VisionTower is a CLIP folder whose tower (configuration and weights) replaces any other; a tower
	// inside the LLaVA folder is then listed as ignored. Empty: Open finds the tower itself.
	VisionTower string
	// Frozen picks the weights that never change (nil: none). Weights keeps those of them that the files
	// store in float16 or bfloat16 in 16 bits (model.FromTensorsHalf) when it builds a float32 store.
	Frozen func(name string) bool
	// BF16 keeps every frozen matrix in bfloat16, rounded once (model.Weights.Narrow), whatever the files
	// store: bfloat16 training's storage (`bf16: true`). It needs Frozen and a float32 store.
	BF16 bool
}

// TokenIDs are the special token ids a config.json names (LLaMA's bos 1 and eos 2 when it names none); Pad
// is −1 when it names none.
type TokenIDs struct{ BOS, EOS, Pad int }

// HFTokens are the two tokens llava-hf adds to LLaMA's vocabulary. Image is image_token_index, the id that
// llava-hf's processor repeats once per image feature and whose embeddings its model replaces by them; Pad
// is "<pad>". flextrain never produces the Image id: its data template (data/template.go) splits "<image>"
// out of the text before tokenising and puts llava.ImageTokenID (−200) in its place, where the model puts
// the image's features. The two rows stay in the vocabulary (and embed_tokens, lm_head), unused.
type HFTokens struct{ Image, Pad int }

// Folder is a published folder read by Open: the model it holds under flextrain's names and everything the
// caller needs to run it or write it back.
type Folder struct {
	Dir    string
	Layout Layout
	// Config is the model built from config.json and the tower's configuration. For LayoutCLIP only
	// Config.Vision is set (SelectLayer −2, LLaVA-1.5's). Config.Flex comes from the export's flex block
	// (FlexFromFile true). Without one it is a neutral setting that only makes the configuration valid:
	// n_sa = L−1, or the first layer whose k/v_proj_hd the files hold; zoom and threshold from the official
	// FlexAttention checkpoint's extra block, else NeutralZoom and NeutralThreshold; NeutralSelectGrid
	// (capped at the HR grid); the attention strategy. The caller runs such a base LLaVA with α = 0, the LR
	// view (plain LLaVA), or trains FlexAttention from it with the run's own flex settings.
	Config       model.Config
	FlexFromFile bool
	// Tensors are the weights by flextrain's names (model.Shapes), in the dtype stored, the tower included,
	// shapes checked against Config; they alias the files' bytes. k/v_proj_hd may be absent:
	// model.FromTensors derives them.
	Tensors map[string]safetensors.Tensor
	// Ignored lists the tensors read but not used (CLIP's post_layernorm and text tower, position_ids and
	// inv_freq buffers, a tower that Options.VisionTower replaced), for the caller to log once.
	Ignored []Ignored
	// WeightsFile is the file the weights were read from (an index, or the single file).
	WeightsFile string
	// TokenizerDir is Dir when it holds tokenizer.json or tokenizer.model, else "" (the caller's
	// tokenizer_path then names one).
	TokenizerDir string
	// VisionDir is the folder the tower's weights came from (Dir when they were inside), VisionConfigFile
	// the file its configuration came from, and VisionTower the config's mm_vision_tower ("" when absent).
	VisionDir, VisionConfigFile, VisionTower string
	Tokens                                   TokenIDs
	HFTokens                                 *HFTokens // LayoutLLaVAHF only
	DType                                    string    // torch_dtype as written ("" when absent)
	MaxPositionEmbeddings                    int       // LlamaConfig's default 2048 when absent
}

// Open reads the published folder dir. Its config.json tells the layout; missing keys take the defaults of
// the class that reads them, and keys that change the model in a way flextrain does not compute are errors
// naming the file, the key and the reason. The weights are model.safetensors.index.json with its shards or
// model.safetensors (read within a bound derived from the model's shapes, as model.LoadWeights does), or
// PyTorch's .bin files (package torchfile: an allow-listed pickle reader, no code run). Every tensor is
// checked against the configuration: a missing weight, an unknown tensor, or one whose shape contradicts
// config.json is named.
//
// The vision tower of a LLaVA folder is taken from, in this order: opts.VisionTower; the folder's own tensors
// (llava-hf's folders and liuhaotian's shards hold them) with the folder's vision_config; the CLIP folder that
// mm_vision_tower names as a local path; the sibling folder of dir named by mm_vision_tower's last element
// (openai/clip-vit-large-patch14-336 → ../clip-vit-large-patch14-336). A folder without a vision_config
// (liuhaotian's) takes the tower's configuration from the first of those CLIP folders. When none works, the
// error lists everything tried.
func Open(dir string, opts Options) (*Folder, error) {
	o, err := readObject(filepath.Join(dir, ConfigFile))
	if err != nil {
		return nil, err
	}
	s := readSpec(o)
	if err := o.err(); err != nil {
		return nil, err
	}
	if s.layout == LayoutCLIP {
		return openCLIP(dir, s)
	}
	return openLLaVA(dir, s, opts)
}

// openCLIP reads a CLIP folder: its tower alone.
func openCLIP(dir string, s spec) (*Folder, error) {
	cfg := model.Config{Vision: *s.vision}
	if err := validateTower(cfg.Vision, s.file); err != nil {
		return nil, err
	}
	tower, src, err := readTower(dir, cfg.Vision)
	if err != nil {
		return nil, err
	}
	if err := checkTensors(towerShapes(cfg.Vision), 0, tower, src, s.file); err != nil {
		return nil, err
	}
	return &Folder{Dir: dir, Layout: LayoutCLIP, Config: cfg, Tensors: tower.tensors, Ignored: tower.ignored,
		WeightsFile: src, VisionDir: dir, VisionConfigFile: s.file, Tokens: TokenIDs{1, 2, -1}, DType: s.dtype}, nil
}

// readTower reads the tower of the CLIP folder dir, and lists the rest as ignored.
func readTower(dir string, v model.VisionConfig) (sorted, string, error) {
	raw, src, err := readWeights(dir, clipLimit(v))
	if err != nil {
		return sorted{}, src, err
	}
	s, err := sortTensors(raw, LayoutCLIP, dir, src)
	return s, src, err
}

// validateTower validates a tower's configuration alone (with a minimal decoder beside it).
func validateTower(v model.VisionConfig, file string) error {
	cfg := model.Config{Vision: v, Text: model.TextConfig{VocabSize: 1, HiddenSize: 2, IntermediateSize: 1, NumLayers: 2,
		NumHeads: 1, RMSNormEps: 1, RopeTheta: 1}, Flex: model.FlexConfig{NSA: 1, Zoom: 1, SelectGrid: 1, Strategy: "attention"}}
	return validate(cfg, file)
}

// openLLaVA reads a LLaVA folder (any layout but CLIP's).
func openLLaVA(dir string, s spec, opts Options) (*Folder, error) {
	search := &towerSearch{dir: dir, spec: s, opts: opts}
	cfg, err := s.baseConfig(search)
	if err != nil {
		return nil, err
	}
	raw, src, err := readWeights(dir, folderLimit(cfg))
	if err != nil {
		return nil, err
	}
	st, err := sortTensors(raw, s.layout, dir, src)
	if err != nil {
		return nil, err
	}
	tower, err := search.weights(st.split(model.VisionPrefix), src)
	if err != nil {
		return nil, err
	}
	st.add(tower)
	return s.finish(cfg, st, search, src)
}

// baseConfig is the model of the config and its tower, with a provisional Flex, validated: its sizes are
// then sane enough to bound the weight files.
func (s spec) baseConfig(search *towerSearch) (model.Config, error) {
	v, err := search.config()
	if err != nil {
		return model.Config{}, err
	}
	v.SelectLayer = s.selectLayer
	if s.mmHidden != 0 && s.mmHidden != v.HiddenSize {
		s.obj.fail("mm_hidden_size", "%d contradicts the tower's hidden_size %d (%s)", s.mmHidden, v.HiddenSize, search.configFile)
	}
	cfg := model.Config{Vision: v, Text: s.text, Flex: model.FlexConfig{NSA: 1, Zoom: 1, SelectGrid: 1, Strategy: "attention"}}
	if err := s.obj.err(); err != nil {
		return cfg, err
	}
	return cfg, validate(cfg, search.files())
}

// finish completes the FlexAttention settings, checks the tensors and builds the Folder.
func (s spec) finish(cfg model.Config, st sorted, search *towerSearch, src string) (*Folder, error) {
	hd := hdLayers(st.tensors)
	cfg.Flex = s.flex.settings(cfg, hd)
	s.flex.check(s.obj, cfg, hd)
	if err := s.obj.err(); err != nil {
		return nil, err
	}
	if err := validate(cfg, s.file); err != nil {
		return nil, err
	}
	if err := checkTensors(model.Shapes(cfg), cfg.Flex.NSA, st, src, search.files()); err != nil {
		return nil, err
	}
	f := &Folder{Dir: search.dir, Layout: s.layout, Config: cfg, FlexFromFile: s.flex.from == "flex", Tensors: st.tensors,
		Ignored: st.ignored, WeightsFile: src, VisionDir: search.weightsDir, VisionConfigFile: search.configFile,
		VisionTower: s.towerName, Tokens: s.tokens, HFTokens: s.hf, DType: s.dtype, MaxPositionEmbeddings: s.maxPos}
	if isFile(filepath.Join(search.dir, "tokenizer.json")) || isFile(filepath.Join(search.dir, "tokenizer.model")) {
		f.TokenizerDir = search.dir
	}
	return f, nil
}

// files names the configuration files of the model, for errors.
func (t *towerSearch) files() string {
	if t.configFile == "" || t.configFile == t.spec.file {
		return t.spec.file
	}
	return fmt.Sprintf("%s with %s", t.spec.file, t.configFile)
}

// ReadModel reads only the configuration of the LLaVA folder dir (config.json, and the tower's
// configuration from the folder opts or mm_vision_tower names when dir has none): the shapes of the model
// it holds, for a run whose model_name_or_path is that folder. Its Flex part is provisional: the run's own
// flex settings apply. A CLIP folder holds no decoder and is refused.
func ReadModel(dir string, opts Options) (model.Config, error) {
	layout, cfg, err := ReadLayout(dir, opts)
	if err == nil && layout == LayoutCLIP {
		err = fmt.Errorf("pretrained: %s is a CLIP folder, a vision tower only: name it as vision_tower, beside a LLaVA folder", dir)
	}
	return cfg, err
}

// ReadLayout reads the layout of the folder dir and, as ReadModel does, the model its configuration
// describes (none for a CLIP folder), without reading a weight.
func ReadLayout(dir string, opts Options) (Layout, model.Config, error) {
	o, err := readObject(filepath.Join(dir, ConfigFile))
	if err != nil {
		return "", model.Config{}, err
	}
	s := readSpec(o)
	if err := o.err(); err != nil {
		return "", model.Config{}, err
	}
	if s.layout == LayoutCLIP {
		return s.layout, model.Config{}, nil
	}
	cfg, err := s.baseConfig(&towerSearch{dir: dir, spec: s, opts: opts})
	return s.layout, cfg, err
}

// StoredDType is the torch_dtype that the folder's config.json gives its weights ("float16", "bfloat16",
// "float32"; "" when it gives none or cannot be read).
func StoredDType(dir string) string {
	o, err := readObject(filepath.Join(dir, ConfigFile))
	if err != nil {
		return ""
	}
	return readSpec(o).dtype
}

// IsFolder reports whether path is a folder with a config.json: a published or exported model, which Open
// reads, rather than a flextrain weights file or folder of model.safetensors alone.
func IsFolder(path string) bool { return isFile(filepath.Join(path, ConfigFile)) }

// HasTokenizer reports whether the folder dir holds a tokenizer (tokenizer.json or tokenizer.model).
func HasTokenizer(dir string) bool {
	return isFile(filepath.Join(dir, "tokenizer.json")) || isFile(filepath.Join(dir, "tokenizer.model"))
}
