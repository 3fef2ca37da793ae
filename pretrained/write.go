package pretrained

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/flextrain/flextrain/model"
	"github.com/flextrain/flextrain/safetensors"
)

// Format is the layout Write writes.
type Format string

// The formats of Write.
const (
	// FormatLLaVA is what LLaVA's load_pretrained_model loads (LlavaLlamaForCausalLM), with FlexAttention's
	// keys and k/v_proj_hd tensors added: the default of `flextrain export`. Open reads it back as
	// LayoutExport.
	FormatLLaVA Format = "llava"
	// FormatLLaVAHF is transformers' LlavaForConditionalGeneration, as llava-hf publishes it.
	FormatLLaVAHF Format = "llava-hf"
)

// Defaults of WriteOptions.
const (
	DefaultMaxShardBytes = 5_000_000_000 // transformers' "5GB"
	DefaultVisionTower   = "openai/clip-vit-large-patch14-336"
	DefaultMaxPositions  = 2048 // LlamaConfig's max_position_embeddings
)

// WriteOptions are the choices of Write beyond the model itself.
type WriteOptions struct {
	// DType is the dtype of the tensors written: "float32" (the default, which keeps a float32 model's bits),
	// "float16" or "bfloat16" (rounded to nearest, ties to even).
	DType string
	// Tokenizer is the folder whose tokenizer files (tokenizer.model, tokenizer.json, tokenizer_config.json,
	// special_tokens_map.json, added_tokens.json: those present) are copied, or one tokenizer file, copied as
	// tokenizer.json when it holds a JSON object and as tokenizer.model otherwise (a gzip-compressed one is
	// refused: Hugging Face reads them plain); "" copies none.
	Tokenizer string
	// Tokens are the special ids written into config.json and generation_config.json; nil: LLaMA's (bos 1,
	// eos 2, no pad).
	Tokens *TokenIDs
	// HFTokens, for FormatLLaVAHF, are the "<image>" and "<pad>" ids that the model's vocabulary already
	// holds (a model read from a llava-hf folder: Folder.HFTokens). nil: they are added as ids V and V+1 and
	// the vocabulary padded to a multiple of 64.
	HFTokens *HFTokens
	// VisionTower is written as mm_vision_tower ("" gives DefaultVisionTower).
	VisionTower string
	// MaxShardBytes bounds the tensor bytes of one shard (0 gives DefaultMaxShardBytes); a tensor larger
	// than that has a shard of its own. A model that fits in one is written as model.safetensors alone.
	MaxShardBytes int64
	// MaxPositionEmbeddings is written as max_position_embeddings (0 gives DefaultMaxPositions).
	MaxPositionEmbeddings int
	// Metadata is added to every shard's metadata, beside format: pt.
	Metadata map[string]string
	// Plain writes a plain LLaVA-1.5: no flex or extra block and no k/v_proj_hd tensor, a model that reads
	// no HR token (a base LLaVA written in another layout or dtype, or a run of the LR view). Open reads it
	// back with the neutral flex settings.
	Plain bool
	// Info, when not nil, is written as config.json's "flextrain" block (what the export holds and where it
	// came from).
	Info any
}

// withDefaults fills the options left empty.
func (o WriteOptions) withDefaults() WriteOptions {
	if o.DType == "" {
		o.DType = "float32"
	}
	if o.Tokens == nil {
		o.Tokens = &TokenIDs{BOS: 1, EOS: 2, Pad: -1}
	}
	if o.VisionTower == "" {
		o.VisionTower = DefaultVisionTower
	}
	if o.MaxShardBytes <= 0 {
		o.MaxShardBytes = DefaultMaxShardBytes
	}
	if o.MaxPositionEmbeddings <= 0 {
		o.MaxPositionEmbeddings = DefaultMaxPositions
	}
	return o
}

// Write writes the model of cfg, whose weights are tensors (flextrain's names, model.Shapes; F32, F64, F16 or
// BF16; k/v_proj_hd may be absent), into dir in format f: the tensors in o.DType as safetensors shards (with
// model.safetensors.index.json when there are several), the tokenizer files of o.Tokenizer,
// generation_config.json, and config.json in the format's spelling with FlexAttention's keys (the `flex`
// block with every setting and the layers that have k/v_proj_hd, and the official checkpoint's `extra`
// block). FormatLLaVAHF renames the tensors and, unless o.HFTokens says the vocabulary holds them already,
// adds "<image>" and "<pad>" to the vocabulary (padded to a multiple of 64, as llava-hf's is) with zero rows
// in embed_tokens and lm_head (never read for "<image>", whose rows the image features replace; lm_head's zero
// rows give those tokens a logit of 0), and names them in the tokenizer files.
//
// Every file is written atomically, the tensors first and config.json last; a config.json already in dir is
// removed first, and the weight files of an earlier write that this one does not replace are removed before
// the new config.json is written, so that a config.json always describes complete shards.
func Write(dir string, f Format, cfg model.Config, tensors map[string]safetensors.Tensor, o WriteOptions) error {
	o = o.withDefaults()
	p, err := plan(dir, f, cfg, tensors, o)
	if err != nil {
		return err
	}
	if err := p.write(dir); err != nil {
		return fmt.Errorf("pretrained: write %s: %w", dir, err)
	}
	return nil
}

// WriteConfig writes into dir only the config.json that Write would write in FormatLLaVA for the model of
// cfg, with the HR layers of tensors (the files the caller writes beside it: a trained adapter's tensors, for
// one) and torch_dtype o.DType as given (float64 included). It is written atomically.
func WriteConfig(dir string, cfg model.Config, tensors map[string]safetensors.Tensor, o WriteOptions) error {
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("pretrained: write %s: %w", dir, err)
	}
	p := &writePlan{format: FormatLLaVA, cfg: cfg, opts: o.withDefaults(), hd: hdLayers(tensors)}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("pretrained: write %s: %w", dir, err)
	}
	if err := writeJSON(filepath.Join(dir, ConfigFile), p.config()); err != nil {
		return fmt.Errorf("pretrained: write %s: %w", dir, err)
	}
	return nil
}

// writePlan is everything a Write writes, checked before the first byte is.
type writePlan struct {
	format  Format
	cfg     model.Config // Text.VocabSize is the written (padded) vocabulary
	opts    WriteOptions
	dtype   safetensors.DType
	tensors []outTensor // in writing order
	hf      HFTokens    // FormatLLaVAHF: the "<image>" and "<pad>" ids
	addHF   bool        // FormatLLaVAHF: whether they are new to the vocabulary and tokenizer
	shards  [][]outTensor
	hd      []int // the layers whose k/v_proj_hd are written
}

// outTensor is one tensor as written: its name in the format's spelling, its source, and the zero rows added.
type outTensor struct {
	name      string
	src       safetensors.Tensor
	shape     []int
	rows, row int // zero rows appended, and their width
}

// plan checks the model and the options for a write into dir, and lays out the files.
func plan(dir string, f Format, cfg model.Config, tensors map[string]safetensors.Tensor, o WriteOptions) (*writePlan, error) {
	if o.Plain {
		tensors = withoutHR(tensors)
	}
	p := &writePlan{format: f, cfg: cfg, opts: o, dtype: dtypes[o.DType], hd: hdLayers(tensors)}
	where := "write " + dir
	switch {
	case f != FormatLLaVA && f != FormatLLaVAHF:
		return nil, fmt.Errorf("pretrained: %s: format %q is not %q or %q", where, f, FormatLLaVA, FormatLLaVAHF)
	case p.dtype == "":
		return nil, fmt.Errorf("pretrained: %s: dtype %q is not float32, float16 or bfloat16", where, o.DType)
	}
	if err := checkModel(where, cfg, tensors); err != nil {
		return nil, err
	}
	if err := p.vocabulary(); err != nil {
		return nil, fmt.Errorf("pretrained: %s: %w", where, err)
	}
	p.lay(tensors)
	return p, nil
}

// withoutHR is tensors without the k/v_proj_hd weights.
func withoutHR(tensors map[string]safetensors.Tensor) map[string]safetensors.Tensor {
	out := make(map[string]safetensors.Tensor, len(tensors))
	for name, t := range tensors {
		if !model.IsHRProjection(name) {
			out[name] = t
		}
	}
	return out
}

// checkModel refuses an invalid configuration, and tensors that are not the model's weights: one missing
// (but k/v_proj_hd), unknown, of another shape or not floating-point.
func checkModel(where string, cfg model.Config, tensors map[string]safetensors.Tensor) error {
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("pretrained: %s: %w", where, err)
	}
	s := newSorted()
	for name, t := range tensors {
		s.tensors[name], s.origin[name] = t, origin{stored: name, file: where}
	}
	return checkTensors(model.Shapes(cfg), cfg.Flex.NSA, s, where, "the model's configuration")
}

// vocabulary decides llava-hf's "<image>" and "<pad>" ids and the vocabulary written.
func (p *writePlan) vocabulary() error {
	v := p.cfg.Text.VocabSize
	switch {
	case p.format != FormatLLaVAHF:
	case p.opts.HFTokens != nil:
		p.hf = *p.opts.HFTokens
		if min(p.hf.Image, p.hf.Pad) < 0 || max(p.hf.Image, p.hf.Pad) >= v || p.hf.Image == p.hf.Pad {
			return fmt.Errorf("HFTokens %+v: two distinct ids of the vocabulary of %d are needed", p.hf, v)
		}
	default:
		p.hf, p.addHF = HFTokens{Image: v, Pad: v + 1}, true
		p.cfg.Text.VocabSize = (v + 2 + 63) / 64 * 64
	}
	return nil
}

// lay orders the tensors (layers in numeric order), names them in the format's spelling, adds the new
// vocabulary rows and cuts the list into shards.
func (p *writePlan) lay(tensors map[string]safetensors.Tensor) {
	names := sortedKeys(tensors)
	slices.SortStableFunc(names, naturalCompare)
	for _, name := range names {
		t := outTensor{name: name, src: tensors[name], shape: slices.Clone(tensors[name].Shape)}
		if p.format == FormatLLaVAHF {
			t.name = hfName(name)
		}
		if p.addHF && (name == "model.embed_tokens.weight" || name == "lm_head.weight") {
			t.rows, t.row = p.cfg.Text.VocabSize-t.shape[0], t.shape[1]
			t.shape[0] = p.cfg.Text.VocabSize
		}
		p.tensors = append(p.tensors, t)
	}
	p.shards = shardTensors(p.tensors, p.dtype, p.opts.MaxShardBytes)
}

// bytes is the size of a tensor as written.
func (t outTensor) bytes(dt safetensors.DType) int64 {
	return satMul(elements(t.shape), int64(dt.Size()))
}

// shardTensors cuts the tensors into shards of at most max bytes each, in order, as transformers does: a
// tensor that does not fit in the current shard starts the next one, and one larger than max is alone.
func shardTensors(ts []outTensor, dt safetensors.DType, maxBytes int64) [][]outTensor {
	var shards [][]outTensor
	var cur []outTensor
	var size int64
	for _, t := range ts {
		if n := t.bytes(dt); len(cur) > 0 && size+n > maxBytes {
			shards, cur, size = append(shards, cur), nil, 0
		}
		cur, size = append(cur, t), size+t.bytes(dt)
	}
	return append(shards, cur)
}

// write writes the planned files into dir: config.json removed, the shards, the index (or the stale one
// removed), the tokenizer files, generation_config.json, and config.json.
func (p *writePlan) write(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := removeFiles(dir, []string{ConfigFile}); err != nil {
		return err
	}
	names, err := p.writeShards(dir)
	if err != nil {
		return err
	}
	if err := removeStaleWeights(dir, names); err != nil {
		return err
	}
	if err := p.writeTokenizer(dir); err != nil {
		return err
	}
	if err := writeJSON(filepath.Join(dir, "generation_config.json"), p.generationConfig()); err != nil {
		return err
	}
	return writeJSON(filepath.Join(dir, ConfigFile), p.config())
}
