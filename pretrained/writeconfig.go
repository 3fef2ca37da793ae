package pretrained

import "github.com/flextrain/flextrain/model"

// llamaJSON is a LLaMA decoder in LlamaConfig's keys, every one written (no reader's defaults relied on).
type llamaJSON struct {
	HiddenSize            int     `json:"hidden_size"`
	IntermediateSize      int     `json:"intermediate_size"`
	NumHiddenLayers       int     `json:"num_hidden_layers"`
	NumAttentionHeads     int     `json:"num_attention_heads"`
	NumKeyValueHeads      int     `json:"num_key_value_heads"`
	VocabSize             int     `json:"vocab_size"`
	RMSNormEps            float64 `json:"rms_norm_eps"`
	RopeTheta             float64 `json:"rope_theta"`
	HiddenAct             string  `json:"hidden_act"`
	MaxPositionEmbeddings int     `json:"max_position_embeddings"`
	InitializerRange      float64 `json:"initializer_range"`
	TieWordEmbeddings     bool    `json:"tie_word_embeddings"`
	AttentionBias         bool    `json:"attention_bias"`
	PretrainingTP         int     `json:"pretraining_tp"`
	UseCache              bool    `json:"use_cache"`
	BOSTokenID            int     `json:"bos_token_id"`
	EOSTokenID            int     `json:"eos_token_id"`
	PadTokenID            *int    `json:"pad_token_id,omitempty"`
	TorchDType            string  `json:"torch_dtype"`
}

// visionJSON is the CLIP tower in CLIPVisionConfig's keys (the export's vision_config, llava-hf's).
type visionJSON struct {
	ModelType         string  `json:"model_type"`
	HiddenSize        int     `json:"hidden_size"`
	IntermediateSize  int     `json:"intermediate_size"`
	NumHiddenLayers   int     `json:"num_hidden_layers"`
	NumAttentionHeads int     `json:"num_attention_heads"`
	ImageSize         int     `json:"image_size"`
	PatchSize         int     `json:"patch_size"`
	LayerNormEps      float64 `json:"layer_norm_eps"`
	HiddenAct         string  `json:"hidden_act"`
	NumChannels       int     `json:"num_channels"`
}

// extraJSON is the `extra` block of the official FlexAttention checkpoint.
type extraJSON struct {
	ZoomRatio   int     `json:"zoom_ratio"`
	LowresSize  int     `json:"lowres_size"`
	HighresSize int     `json:"highres_size"`
	Threshold   float64 `json:"threshold"`
}

// flexJSON is flextrain's `flex` block: every FlexAttention setting (docs/DESIGN.md §7–§8) and the layers
// whose k/v_proj_hd the files hold.
type flexJSON struct {
	NSA         int     `json:"n_sa"`
	Zoom        int     `json:"zoom"`
	SelectGrid  int     `json:"select_grid"`
	LowresSize  int     `json:"lowres_size"`
	HighresSize int     `json:"highres_size"`
	Threshold   float64 `json:"threshold"`
	Strategy    string  `json:"strategy"`
	Ratio       float64 `json:"ratio,omitempty"`
	HDLayers    []int   `json:"hd_layers"`
}

// llavaJSON is FormatLLaVA's config.json: LLaVA-1.5's keys (LlavaLlamaForCausalLM), the export's
// vision_config, and FlexAttention's blocks.
type llavaJSON struct {
	Architectures []string `json:"architectures"`
	ModelType     string   `json:"model_type"`
	llamaJSON
	MMHiddenSize          int    `json:"mm_hidden_size"`
	MMProjectorType       string `json:"mm_projector_type"`
	MMVisionSelectLayer   int    `json:"mm_vision_select_layer"`
	MMVisionSelectFeature string `json:"mm_vision_select_feature"`
	MMVisionTower         string `json:"mm_vision_tower"`
	MMUseImStartEnd       bool   `json:"mm_use_im_start_end"`
	MMUseImPatchToken     bool   `json:"mm_use_im_patch_token"`
	MMPatchMergeType      string `json:"mm_patch_merge_type"`
	ImageAspectRatio      string `json:"image_aspect_ratio"`
	UseMMProj             bool   `json:"use_mm_proj"`
	TuneMMMLPAdapter      bool   `json:"tune_mm_mlp_adapter"`
	FreezeMMMLPAdapter    bool   `json:"freeze_mm_mlp_adapter"`
	blocksJSON
}

// blocksJSON ends both formats' config.json: the tower, FlexAttention's blocks (nil for a plain LLaVA) and
// flextrain's description of the folder.
type blocksJSON struct {
	VisionConfig visionJSON `json:"vision_config"`
	Extra        *extraJSON `json:"extra,omitempty"`
	Flex         *flexJSON  `json:"flex,omitempty"`
	Flextrain    any        `json:"flextrain,omitempty"`
}

// hfTextJSON is llava-hf's text_config.
type hfTextJSON struct {
	ModelType     string   `json:"model_type"`
	Architectures []string `json:"architectures"`
	llamaJSON
}

// hfJSON is FormatLLaVAHF's config.json (LlavaForConditionalGeneration), with FlexAttention's blocks.
type hfJSON struct {
	Architectures               []string   `json:"architectures"`
	ModelType                   string     `json:"model_type"`
	ImageTokenIndex             int        `json:"image_token_index"`
	PadTokenID                  int        `json:"pad_token_id"`
	IgnoreIndex                 int        `json:"ignore_index"`
	ProjectorHiddenAct          string     `json:"projector_hidden_act"`
	MultimodalProjectorBias     bool       `json:"multimodal_projector_bias"`
	VisionFeatureLayer          int        `json:"vision_feature_layer"`
	VisionFeatureSelectStrategy string     `json:"vision_feature_select_strategy"`
	ImageSeqLength              int        `json:"image_seq_length"`
	TieWordEmbeddings           bool       `json:"tie_word_embeddings"`
	VocabSize                   int        `json:"vocab_size"`
	TorchDType                  string     `json:"torch_dtype"`
	TextConfig                  hfTextJSON `json:"text_config"`
	blocksJSON
}

// config is the plan's config.json.
func (p *writePlan) config() any {
	if p.format == FormatLLaVAHF {
		return p.hfConfig()
	}
	v := p.cfg.Vision
	return llavaJSON{Architectures: []string{"LlavaLlamaForCausalLM"}, ModelType: "llava", llamaJSON: p.llama(p.opts.Tokens.Pad),
		MMHiddenSize: v.HiddenSize, MMProjectorType: "mlp2x_gelu", MMVisionSelectLayer: v.SelectLayer,
		MMVisionSelectFeature: "patch", MMVisionTower: p.opts.VisionTower, MMPatchMergeType: "flat",
		ImageAspectRatio: "pad", UseMMProj: true, blocksJSON: p.blocks()}
}

// hfConfig is FormatLLaVAHF's config.json.
func (p *writePlan) hfConfig() hfJSON {
	_, n, _, _ := p.cfg.Grid()
	return hfJSON{Architectures: []string{"LlavaForConditionalGeneration"}, ModelType: "llava",
		ImageTokenIndex: p.hf.Image, PadTokenID: p.hf.Pad, IgnoreIndex: -100, ProjectorHiddenAct: "gelu",
		MultimodalProjectorBias: true, VisionFeatureLayer: p.cfg.Vision.SelectLayer,
		VisionFeatureSelectStrategy: "default", ImageSeqLength: n, VocabSize: p.cfg.Text.VocabSize, TorchDType: p.opts.DType,
		TextConfig: hfTextJSON{ModelType: "llama", Architectures: []string{"LlamaForCausalLM"}, llamaJSON: p.llama(p.hf.Pad)},
		blocksJSON: p.blocks()}
}

// llama is the decoder's keys; pad < 0 writes no pad_token_id.
func (p *writePlan) llama(pad int) llamaJSON {
	t := p.cfg.Text
	j := llamaJSON{HiddenSize: t.HiddenSize, IntermediateSize: t.IntermediateSize, NumHiddenLayers: t.NumLayers,
		NumAttentionHeads: t.NumHeads, NumKeyValueHeads: t.NumHeads, VocabSize: t.VocabSize, RMSNormEps: t.RMSNormEps,
		RopeTheta: t.RopeTheta, HiddenAct: "silu", MaxPositionEmbeddings: p.opts.MaxPositionEmbeddings,
		InitializerRange: 0.02, PretrainingTP: 1, UseCache: true, BOSTokenID: p.opts.Tokens.BOS,
		EOSTokenID: p.opts.Tokens.EOS, TorchDType: p.opts.DType}
	if pad >= 0 {
		j.PadTokenID = &pad
	}
	return j
}

// blocks are the keys that end either format's config.json.
func (p *writePlan) blocks() blocksJSON {
	return blocksJSON{VisionConfig: vision(p.cfg.Vision), Extra: p.extra(), Flex: p.flex(), Flextrain: p.opts.Info}
}

// vision is the tower's keys.
func vision(v model.VisionConfig) visionJSON {
	return visionJSON{ModelType: "clip_vision_model", HiddenSize: v.HiddenSize, IntermediateSize: v.IntermediateSize,
		NumHiddenLayers: v.NumLayers, NumAttentionHeads: v.NumHeads, ImageSize: v.ImageSize, PatchSize: v.PatchSize,
		LayerNormEps: v.LayerNormEps, HiddenAct: "quick_gelu", NumChannels: 3}
}

// extra is the official FlexAttention checkpoint's block (nil for a plain LLaVA).
func (p *writePlan) extra() *extraJSON {
	if p.opts.Plain {
		return nil
	}
	s, f := p.cfg.Vision.ImageSize, p.cfg.Flex
	return &extraJSON{ZoomRatio: f.Zoom, LowresSize: s, HighresSize: f.Zoom * s, Threshold: f.Threshold}
}

// flex is flextrain's block (nil for a plain LLaVA).
func (p *writePlan) flex() *flexJSON {
	if p.opts.Plain {
		return nil
	}
	s, f := p.cfg.Vision.ImageSize, p.cfg.Flex
	return &flexJSON{NSA: f.NSA, Zoom: f.Zoom, SelectGrid: f.SelectGrid, LowresSize: s, HighresSize: f.Zoom * s,
		Threshold: f.Threshold, Strategy: f.Strategy, Ratio: f.Ratio, HDLayers: p.hd}
}

// generationConfig is generation_config.json: the special ids.
func (p *writePlan) generationConfig() map[string]int {
	g := map[string]int{"bos_token_id": p.opts.Tokens.BOS, "eos_token_id": p.opts.Tokens.EOS}
	pad := p.opts.Tokens.Pad
	if p.format == FormatLLaVAHF {
		pad = p.hf.Pad
	}
	if pad >= 0 {
		g["pad_token_id"] = pad
	}
	return g
}
