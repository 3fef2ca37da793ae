package pretrained

import (
	"fmt"
	"slices"

	"github.com/flextrain/flextrain/model"
)

// The FlexAttention settings Open gives a folder that names none (a base LLaVA): the paper's zoom and select
// grid (capped at the HR grid), docs/DESIGN.md's threshold, and n_sa = L−1, so that only the last layer has
// HR projections (derived from its k/v_proj: docs/DESIGN.md §7) and the model holds the fewest extra weights.
// They only make the configuration valid: a base LLaVA is run with α = 0 (the LR view, plain LLaVA), and a
// run that trains FlexAttention from it takes its own flex settings.
const (
	NeutralZoom       = 3
	NeutralSelectGrid = 9
	NeutralThreshold  = 48
)

// flexKeys are the FlexAttention settings a config.json holds: flextrain's `flex` block, the `extra` block of
// the official FlexAttention checkpoint (zoom and threshold only), or nothing.
type flexKeys struct {
	from            string           // "flex", "extra" or "": where the settings came from
	cfg             model.FlexConfig // the values read
	lowres, highres int              // lowres_size and highres_size, 0 when absent
	hdLayers        []int            // flex.hd_layers, nil when absent
}

// readFlex reads the flex block, or else the extra block.
func readFlex(o object) flexKeys {
	if f, ok := o.sub("flex"); ok {
		for _, key := range []string{"n_sa", "zoom", "select_grid"} {
			if !f.has(key) {
				f.fail(key, "absent: the flex block must give it")
			}
		}
		return flexKeys{from: "flex", lowres: f.int("lowres_size", 0), highres: f.int("highres_size", 0),
			hdLayers: f.ints("hd_layers"), cfg: model.FlexConfig{NSA: f.int("n_sa", 0), Zoom: f.int("zoom", 0),
				SelectGrid: f.int("select_grid", 0), Threshold: f.float("threshold", NeutralThreshold),
				Strategy: f.str("strategy", "attention"), Ratio: f.float("ratio", 0)}}
	}
	if e, ok := o.sub("extra"); ok {
		return flexKeys{from: "extra", lowres: e.int("lowres_size", 0), highres: e.int("highres_size", 0),
			cfg: model.FlexConfig{Zoom: e.int("zoom_ratio", NeutralZoom), Threshold: e.float("threshold", NeutralThreshold)}}
	}
	return flexKeys{cfg: model.FlexConfig{Zoom: NeutralZoom, Threshold: NeutralThreshold}}
}

// settings completes the flex block's values for the model of cfg, whose tensors have HR projections in the
// layers hd (sorted): without a flex block, n_sa is the first of those layers (or L−1 when there are none)
// and the select grid and strategy are the neutral ones.
func (k flexKeys) settings(cfg model.Config, hd []int) model.FlexConfig {
	f := k.cfg
	if k.from == "flex" {
		return f
	}
	f.NSA = cfg.Text.NumLayers - 1
	if len(hd) > 0 {
		f.NSA = hd[0]
	}
	cfg.Flex.Zoom = f.Zoom
	_, _, zg, _ := cfg.Grid()
	f.SelectGrid, f.Strategy = max(1, min(NeutralSelectGrid, zg)), "attention"
	return f
}

// check refuses settings that contradict the tower (lowres_size, highres_size) or the tensors (hd_layers,
// the layers whose k/v_proj_hd the files hold: hd).
func (k flexKeys) check(o object, cfg model.Config, hd []int) {
	block := map[string]string{"flex": "flex.", "extra": "extra."}[k.from]
	s, z := cfg.Vision.ImageSize, cfg.Flex.Zoom
	if k.lowres != 0 && k.lowres != s {
		o.fail(block+"lowres_size", "%d contradicts the tower's image_size %d", k.lowres, s)
	}
	if k.highres != 0 && k.highres != z*s {
		o.fail(block+"highres_size", "%d contradicts zoom %d × image_size %d", k.highres, z, s)
	}
	if k.hdLayers != nil && !slices.Equal(k.hdLayers, hd) {
		o.fail(block+"hd_layers", "%v contradicts the tensors, which have HR projections in layers %v", k.hdLayers, hd)
	}
}

// hdLayers lists, sorted, the layers whose k_proj_hd or v_proj_hd is among names.
func hdLayers[V any](names map[string]V) []int {
	out := []int{}
	for name := range names {
		if l, ok := model.HRLayer(name); ok {
			out = append(out, l)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// validate checks the whole configuration, each problem naming the file it was read from.
func validate(cfg model.Config, file string) error {
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("pretrained: %s: %w", file, err)
	}
	return nil
}
