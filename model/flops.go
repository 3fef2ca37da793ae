package model

import "fmt"

// FLOP counts follow docs/DESIGN.md §14: forward (prefill) FLOPs of one sample, 2 per multiply-add, matrix
// products only (no norms, softmax or activations), no causal halving, no decoding.
// Counts are float64: the 7B model's are ~1e13, and a selected-token count may be fractional (a mean).

// FLOPs is a forward FLOP count split into the decoder (layers and lm_head) and the vision side (CLIP passes
// and the projector).
type FLOPs struct {
	Decoder float64 `json:"decoder"`
	Vision  float64 `json:"vision"`
}

// Total is Decoder + Vision.
func (f FLOPs) Total() float64 { return f.Decoder + f.Vision }

// Forward is one sample's forward FLOPs in the four configurations of docs/DESIGN.md §14.
type Forward struct {
	TextTokens  int     `json:"text_tokens"`  // T
	ImageTokens int     `json:"image_tokens"` // n, the LR image tokens
	HRTokens    int     `json:"hr_tokens"`    // M_all
	Selected    float64 `json:"selected"`     // M, HR tokens each row attends (fraction·M_all)

	// LROnly is plain LLaVA: decoder over N = n + T tokens, one CLIP pass and projector.
	LROnly FLOPs `json:"lr_only"`
	// FlexInference is convention (a), inference-true: k/v_proj_hd over the M selected HR tokens only, and
	// the vision side counts the LR pass and the Z² HR crops.
	FlexInference FLOPs `json:"flex_inference"`
	// FlexPaper is convention (b), paper-like: k/v_proj_hd over all M_all HR tokens in every FlexAttention
	// layer, attention over the M selected ones, HR vision passes not counted (the paper's 17.1 TFLOPs).
	FlexPaper FLOPs `json:"flex_paper"`
	// FullHR puts all M_all HR tokens into the sequence instead of the LR ones (T + M_all tokens through
	// every plain layer) with Z² HR crops: the full-self-attention baseline of docs/DESIGN.md §14. The bench's
	// hd-seq mode also keeps the LR tokens; PlainLayerFLOPs gives that count too.
	FullHR FLOPs `json:"full_hr"`
}

// ReductionInference is 1 − FlexInference/FullHR, all vision passes counted on both sides.
func (f Forward) ReductionInference() float64 { return 1 - f.FlexInference.Total()/f.FullHR.Total() }

// ReductionPaper is 1 − FlexPaper/FullHR with the HR vision passes left out of both (the baseline counted
// the paper-like way: its decoder alone).
func (f Forward) ReductionPaper() float64 { return 1 - f.FlexPaper.Total()/f.FullHR.Decoder }

// ForwardFLOPs counts one sample with textTokens text tokens and one image, each FlexAttention row attending
// the fraction `selected` (0…1) of the HR tokens.
func (c Config) ForwardFLOPs(textTokens int, selected float64) (Forward, error) {
	if err := c.Validate(); err != nil {
		return Forward{}, err
	}
	if textTokens < 0 || !(selected >= 0 && selected <= 1) {
		return Forward{}, fmt.Errorf("model: flops: need text tokens ≥ 0 and selected in [0, 1], got %d, %g", textTokens, selected)
	}
	_, n, _, mAll := c.Grid()
	N, M, Mall := float64(n+textTokens), selected*float64(mAll), float64(mAll)
	L, nsa, z2 := float64(c.Text.NumLayers), float64(c.Flex.NSA), float64(c.Flex.Zoom*c.Flex.Zoom)
	plain, crop, head := c.PlainLayerFLOPs(N), c.VisionCropFLOPs(), c.LMHeadFLOPs(N)
	full := float64(textTokens) + Mall
	return Forward{
		TextTokens: textTokens, ImageTokens: n, HRTokens: mAll, Selected: M,
		LROnly:        FLOPs{Decoder: L*plain + head, Vision: crop},
		FlexInference: FLOPs{Decoder: nsa*plain + (L-nsa)*c.FlexLayerFLOPs(N, M, M) + head, Vision: (1 + z2) * crop},
		FlexPaper:     FLOPs{Decoder: nsa*plain + (L-nsa)*c.FlexLayerFLOPs(N, Mall, M) + head, Vision: crop},
		FullHR:        FLOPs{Decoder: L*c.PlainLayerFLOPs(full) + c.LMHeadFLOPs(full), Vision: z2 * crop},
	}, nil
}

// PlainLayerFLOPs is one LLaMA layer over n tokens: q,k,v,o 2n·4D², QKᵀ and PV 2·2n²D, SwiGLU MLP 2n·3DF.
func (c Config) PlainLayerFLOPs(n float64) float64 {
	D, F := float64(c.Text.HiddenSize), float64(c.Text.IntermediateSize)
	return 2*n*4*D*D + 4*n*n*D + 6*n*D*F
}

// FlexLayerFLOPs is one FlexAttention layer over n tokens whose k_proj_hd/v_proj_hd run over `projected` HR
// tokens (2·projected·2D²) and whose attention covers n + `attended` keys (2·2n(n+attended)D).
func (c Config) FlexLayerFLOPs(n, projected, attended float64) float64 {
	D, F := float64(c.Text.HiddenSize), float64(c.Text.IntermediateSize)
	return 2*n*4*D*D + 2*projected*2*D*D + 4*n*(n+attended)*D + 6*n*D*F
}

// FlexDenseLayerFLOPs is one FlexAttention layer computed the official (dense) way over n tokens: all M_all
// HR tokens projected, QKᵀ over n + M_all keys once, and PV twice (plain and selected softmax), as the
// bench's flex-dense mode counts it (docs/DESIGN.md §14).
func (c Config) FlexDenseLayerFLOPs(n float64) float64 {
	D, F := float64(c.Text.HiddenSize), float64(c.Text.IntermediateSize)
	_, _, _, mAll := c.Grid()
	m := float64(mAll)
	return 2*n*4*D*D + 2*m*2*D*D + 2*n*(n+m)*D + 2*2*n*(n+m)*D + 6*n*D*F
}

// LMHeadFLOPs is the lm_head over n positions: 2nDV.
func (c Config) LMHeadFLOPs(n float64) float64 {
	return 2 * n * float64(c.Text.HiddenSize) * float64(c.Text.VocabSize)
}

// VisionCropFLOPs is one S×S crop through the CLIP layers that produce hs[select_layer] (over n+1 tokens with
// CLS: 2T(4Cv² + 2Cv·I) + 4T²Cv each), the patch embedding (2n·3P²Cv) and the projector (2n(Cv·D + D²)).
func (c Config) VisionCropFLOPs() float64 {
	v := c.Vision
	_, n, _, _ := c.Grid()
	Cv, I, P, D := float64(v.HiddenSize), float64(v.IntermediateSize), float64(v.PatchSize), float64(c.Text.HiddenSize)
	T, nf := float64(n+1), float64(n)
	layer := 2*T*(4*Cv*Cv+2*Cv*I) + 4*T*T*Cv
	return float64(c.VisionLayersRun())*layer + 2*nf*3*P*P*Cv + 2*nf*(Cv*D+D*D)
}
