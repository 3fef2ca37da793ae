package pretrained

import (
	"slices"

	"github.com/flextrain/flextrain/model"
)

// spec is what one config.json says of the model, before the tower is found and the tensors are read.
type spec struct {
	obj         object // the file, for the checks made once the tower is known
	layout      Layout
	file        string
	text        model.TextConfig
	vision      *model.VisionConfig // nil: the file describes no tower (liuhaotian's LLaVA)
	selectLayer int
	mmHidden    int    // mm_hidden_size of the LLaVA layout, 0 in the others
	towerName   string // mm_vision_tower
	flex        flexKeys
	tokens      TokenIDs
	hf          *HFTokens
	dtype       string
	maxPos      int
}

// readSpec tells the layout of a config.json and reads it.
func readSpec(o object) spec {
	s := spec{file: o.file}
	switch layout := detectLayout(o); layout {
	case LayoutCLIP:
		s = spec{layout: layout, file: o.file, vision: ptr(readCLIP(o)), dtype: o.str("torch_dtype", "")}
	case LayoutLLaVAHF:
		s = readHF(o)
	case LayoutLLaVA, LayoutExport:
		s = readLLaVA(o, layout)
	}
	s.obj = o
	return s
}

func ptr[T any](v T) *T { return &v }

// detectLayout tells the layout from model_type and architectures; anything else is refused.
func detectLayout(o object) Layout {
	mt := o.str("model_type", "")
	arch, _ := o.get("architectures")
	list, _ := arch.([]any)
	switch {
	case mt == "clip" || mt == "clip_vision_model":
		return LayoutCLIP
	case mt == "llava" && (o.has("text_config") || slices.Contains(list, any("LlavaForConditionalGeneration"))):
		return LayoutLLaVAHF
	case (mt == "llava" || mt == "llava_llama") && o.has("flex"):
		return LayoutExport
	case mt == "llava" || mt == "llava_llama":
		return LayoutLLaVA
	}
	o.fail("model_type", "%q is not a LLaVA-1.5 or CLIP model (llava, llava_llama, clip, clip_vision_model): "+
		"flextrain's model is LLaVA-1.5's, a LLaMA decoder with a CLIP tower", mt)
	return ""
}

// readLlama reads a LLaMA decoder's keys with the defaults of transformers' LlamaConfig, refusing those that
// change the decoder of docs/DESIGN.md §6. It also returns the token ids and max_position_embeddings.
func readLlama(o object) (model.TextConfig, TokenIDs, int) {
	t := model.TextConfig{
		VocabSize: o.int("vocab_size", 32000), HiddenSize: o.int("hidden_size", 4096),
		IntermediateSize: o.int("intermediate_size", 11008), NumLayers: o.int("num_hidden_layers", 32),
		NumHeads: o.int("num_attention_heads", 32), RMSNormEps: o.float("rms_norm_eps", 1e-6),
		RopeTheta: o.float("rope_theta", 10000),
	}
	if kv := o.int("num_key_value_heads", t.NumHeads); kv != t.NumHeads {
		o.fail("num_key_value_heads", "%d differs from num_attention_heads %d: flextrain has no grouped-query attention", kv, t.NumHeads)
	}
	if hd := o.int("head_dim", 0); hd != 0 && t.NumHeads > 0 && hd != t.HiddenSize/t.NumHeads {
		o.fail("head_dim", "%d differs from hidden_size/num_attention_heads = %d: flextrain's heads split the width", hd, t.HiddenSize/t.NumHeads)
	}
	o.onlyStr("hidden_act", "silu", "flextrain's MLP is LLaMA's SwiGLU (docs/DESIGN.md §6)", "silu")
	o.onlyBool("tie_word_embeddings", false, false, "flextrain's lm_head is a weight of its own, not the embeddings")
	o.onlyBool("attention_bias", false, false, "flextrain's attention projections have no biases")
	o.onlyBool("mlp_bias", false, false, "flextrain's MLP projections have no biases")
	if f := o.float("partial_rotary_factor", 1); f != 1 {
		o.fail("partial_rotary_factor", "%g is not supported: flextrain rotates the whole head", f)
	}
	for _, key := range []string{"rope_scaling", "rope_parameters"} {
		t.RopeTheta = readRope(o, key, t.RopeTheta)
	}
	o.absent("quantization_config", "the weights are quantised; flextrain reads floating-point weights only")
	tok := TokenIDs{BOS: o.int("bos_token_id", 1), EOS: o.int("eos_token_id", 2), Pad: o.int("pad_token_id", -1)}
	return t, tok, o.int("max_position_embeddings", 2048)
}

// readRope reads a RoPE block (rope_scaling of transformers 4, rope_parameters of later versions): only the
// plain rotation is supported, and a rope_theta inside it is the one used.
func readRope(o object, key string, theta float64) float64 {
	r, ok := o.sub(key)
	if !ok {
		return theta
	}
	kind := r.str("rope_type", r.str("type", "default"))
	if kind != "default" {
		o.fail(key, "rope type %q is not supported: flextrain's RoPE is unscaled (docs/DESIGN.md §6)", kind)
	}
	return r.float("rope_theta", theta)
}

// readCLIPVision reads a CLIP ViT's keys with the defaults of transformers' CLIPVisionConfig (a ViT-B/32 at
// 224 pixels), refusing those that change the tower of docs/DESIGN.md §3. SelectLayer is LLaVA-1.5's −2;
// the LLaVA layouts replace it with their own key.
func readCLIPVision(o object) model.VisionConfig {
	o.onlyStr("model_type", "clip_vision_model", "flextrain's tower is CLIP's ViT", "clip_vision_model")
	v := model.VisionConfig{
		ImageSize: o.int("image_size", 224), PatchSize: o.int("patch_size", 32), HiddenSize: o.int("hidden_size", 768),
		IntermediateSize: o.int("intermediate_size", 3072), NumLayers: o.int("num_hidden_layers", 12),
		NumHeads: o.int("num_attention_heads", 12), LayerNormEps: o.float("layer_norm_eps", 1e-5), SelectLayer: -2,
	}
	o.onlyStr("hidden_act", "quick_gelu", "flextrain's tower uses quick_gelu (docs/DESIGN.md §3)", "quick_gelu")
	if c := o.int("num_channels", 3); c != 3 {
		o.fail("num_channels", "%d is not supported: flextrain's images are RGB", c)
	}
	return v
}

// readCLIP reads a CLIP folder's config: CLIPModel's vision_config (overlaid, as transformers does, with the
// vision_config_dict of older files), or CLIPVisionModel's own keys.
func readCLIP(o object) model.VisionConfig {
	if o.str("model_type", "") == "clip_vision_model" {
		return readCLIPVision(o)
	}
	m := map[string]any{}
	for _, key := range []string{"vision_config", "vision_config_dict"} {
		if sub, ok := o.sub(key); ok {
			for k, v := range sub.m {
				m[k] = v
			}
		}
	}
	return readCLIPVision(newObject(o.file, "vision_config.", m, o.errs))
}

// readLLaVA reads liuhaotian's LlavaLlamaForCausalLM config (and flextrain's export): LLaMA's flat keys, the
// mm_* keys with the defaults of LLaVA's own loader, and the export's vision_config and flex blocks.
func readLLaVA(o object, layout Layout) spec {
	s := spec{layout: layout, file: o.file, towerName: o.str("mm_vision_tower", ""), dtype: o.str("torch_dtype", "")}
	s.text, s.tokens, s.maxPos = readLlama(o)
	s.selectLayer = o.int("mm_vision_select_layer", 0)
	if !o.has("mm_vision_select_layer") {
		o.fail("mm_vision_select_layer", "absent: LLaVA's tower reads it without a default")
	}
	s.mmHidden = o.int("mm_hidden_size", 0)
	if !o.has("mm_hidden_size") {
		o.fail("mm_hidden_size", "absent: LLaVA's projector reads it without a default")
	}
	readMM(o)
	if v, ok := o.sub("vision_config"); ok {
		s.vision = ptr(readCLIPVision(v))
	}
	s.flex = readFlex(o)
	return s
}

// readMM checks the mm_* keys that change the model, each with the default LLaVA's loader takes.
func readMM(o object) {
	o.onlyStr("mm_vision_select_feature", "patch", "flextrain's tower drops the CLS row, as \"patch\" does (docs/DESIGN.md §3)", "patch")
	o.onlyStr("mm_projector_type", "linear", "flextrain's projector is mlp2x_gelu (docs/DESIGN.md §4)", "mlp2x_gelu")
	o.onlyStr("image_aspect_ratio", "", "flextrain pads every image to a square (docs/DESIGN.md §4)", "pad")
	o.onlyStr("mm_patch_merge_type", "flat", "LLaVA-1.5 puts the image features in the sequence as they come", "flat")
	o.onlyBool("mm_use_im_start_end", false, false, "flextrain's template puts no <im_start>/<im_end> tokens around the image")
	o.onlyBool("mm_use_im_patch_token", true, false, "LLaVA's loader would add an <im_patch> token to the vocabulary")
	o.onlyBool("s2", false, false, "the multi-scale S2 tower is not the CLIP tower flextrain computes")
}

// llavaTower is the tower LlavaConfig builds when a config has no vision_config: CLIP ViT-L/14 at 336 pixels.
func llavaTower() map[string]any {
	return map[string]any{"intermediate_size": jsonInt(4096), "hidden_size": jsonInt(1024), "patch_size": jsonInt(14),
		"image_size": jsonInt(336), "num_hidden_layers": jsonInt(24), "num_attention_heads": jsonInt(16)}
}

// readHF reads llava-hf's LlavaForConditionalGeneration config: text_config (LlamaConfig) and vision_config
// (CLIPVisionConfig), each omitting the keys at their class's defaults, and the top-level keys with
// LlavaConfig's defaults.
func readHF(o object) spec {
	s := spec{layout: LayoutLLaVAHF, file: o.file}
	tc, ok := o.sub("text_config")
	if !ok {
		tc = newObject(o.file, "text_config.", map[string]any{}, o.errs)
	}
	tc.onlyStr("model_type", "llama", "flextrain's decoder is LLaMA's", "llama")
	s.text, s.tokens, s.maxPos = readLlama(tc)
	if v := o.int("vocab_size", s.text.VocabSize); v != s.text.VocabSize {
		o.fail("vocab_size", "%d contradicts text_config.vocab_size %d", v, s.text.VocabSize)
	}
	vc, ok := o.sub("vision_config")
	if !ok {
		vc = newObject(o.file, "vision_config.", llavaTower(), o.errs)
	}
	s.vision = ptr(readCLIPVision(vc))
	s.selectLayer = readFeatureLayer(o)
	readHFTop(o)
	s.tokens.Pad = o.int("pad_token_id", s.tokens.Pad)
	s.hf = &HFTokens{Image: o.int("image_token_index", o.int("image_token_id", 32000)), Pad: s.tokens.Pad}
	s.dtype = o.str("torch_dtype", tc.str("torch_dtype", ""))
	s.flex = readFlex(o)
	return s
}

// readFeatureLayer reads vision_feature_layer (default −2): one layer, as flextrain's tower selects.
func readFeatureLayer(o object) int {
	if v, ok := o.get("vision_feature_layer"); ok {
		if _, isList := v.([]any); isList {
			o.fail("vision_feature_layer", "%s is not supported: a list concatenates several layers' features; flextrain selects one", compact(v))
			return -2
		}
	}
	return o.int("vision_feature_layer", -2)
}

// readHFTop checks LlavaConfig's top-level keys that change the model.
func readHFTop(o object) {
	o.onlyStr("vision_feature_select_strategy", "default", "flextrain's tower drops the CLS row, as \"default\" does (docs/DESIGN.md §3)", "default")
	o.onlyStr("projector_hidden_act", "gelu", "flextrain's projector uses the exact GELU (docs/DESIGN.md §4)", "gelu")
	o.onlyBool("multimodal_projector_bias", true, true, "flextrain's projector has biases")
	o.onlyBool("tie_word_embeddings", false, false, "flextrain's lm_head is a weight of its own, not the embeddings")
	o.absent("quantization_config", "the weights are quantised; flextrain reads floating-point weights only")
}
