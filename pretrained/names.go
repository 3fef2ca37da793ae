package pretrained

import (
	"fmt"
	"slices"
	"strings"

	"github.com/flextrain/flextrain/model"
	"github.com/flextrain/flextrain/safetensors"
)

// rename is one prefix of a layout's tensor names and the prefix flextrain gives it.
type rename struct{ from, to string }

// hfPublished maps the names of llava-hf's published folders (language_model.model.…) to flextrain's; Write
// uses it the other way.
var hfPublished = []rename{
	{"language_model.model.", "model."},
	{"language_model.lm_head.", "lm_head."},
	{"multi_modal_projector.linear_1.", "model.mm_projector.0."},
	{"multi_modal_projector.linear_2.", "model.mm_projector.2."},
	{"vision_tower.vision_model.", model.VisionPrefix},
}

// hfNames adds the names that transformers writes itself from 4.52 on (model.language_model.…, and lm_head.…,
// which needs no renaming).
var hfNames = append(slices.Clone(hfPublished), []rename{
	{"model.language_model.", "model."},
	{"model.multi_modal_projector.linear_1.", "model.mm_projector.0."},
	{"model.multi_modal_projector.linear_2.", "model.mm_projector.2."},
	{"model.vision_tower.vision_model.", model.VisionPrefix},
}...)

// clipNames maps a CLIP folder's tower to flextrain's names.
var clipNames = []rename{{"vision_model.", model.VisionPrefix}}

// renames returns the renaming of a layout (none for LLaVA's own names).
func renames(l Layout) []rename {
	switch l {
	case LayoutLLaVAHF:
		return hfNames
	case LayoutCLIP:
		return clipNames
	}
	return nil
}

// flextrainName is a stored name under flextrain's spelling (unchanged when no prefix matches).
func flextrainName(stored string, rs []rename) string {
	for _, r := range rs {
		if strings.HasPrefix(stored, r.from) {
			return r.to + strings.TrimPrefix(stored, r.from)
		}
	}
	return stored
}

// hfName is flextrain's name under llava-hf's spelling, as the published folders have it.
func hfName(name string) string {
	for _, r := range hfPublished {
		if strings.HasPrefix(name, r.to) {
			return r.from + strings.TrimPrefix(name, r.to)
		}
	}
	return name
}

// ignoreReason says why a stored tensor is read but not used, or "" when it is a candidate weight.
func ignoreReason(name string, l Layout) string {
	switch {
	case strings.HasSuffix(name, ".position_ids"):
		return "an index buffer (0…n), not a weight"
	case strings.HasSuffix(name, ".rotary_emb.inv_freq"):
		return "RoPE's frequency table, which flextrain computes from rope_theta"
	case strings.HasPrefix(name, model.VisionPrefix+"post_layernorm."):
		return "CLIP's final LayerNorm, after the layer LLaVA reads (docs/DESIGN.md §3)"
	case l == LayoutCLIP && !strings.HasPrefix(name, model.VisionPrefix):
		return "CLIP's text tower or contrastive head, not part of LLaVA"
	}
	return ""
}

// Ignored is a tensor read from a folder but not used, with the reason, for the caller to log once.
type Ignored struct {
	Name   string // as stored
	Folder string
	Reason string
}

// origin is where a tensor came from: its stored name and the weight file (index or single file) read.
type origin struct{ stored, file string }

// sorted is a folder's tensors under flextrain's names, where each came from, and the tensors read but not
// used.
type sorted struct {
	tensors map[string]safetensors.Tensor
	origin  map[string]origin
	ignored []Ignored
}

func newSorted() sorted {
	return sorted{tensors: map[string]safetensors.Tensor{}, origin: map[string]origin{}}
}

// sortTensors renames the tensors of a folder of layout l, read from the weight file src, and sets the
// ignored ones apart. Two stored names for one weight are an error naming both.
func sortTensors(raw map[string]safetensors.Tensor, l Layout, folder, src string) (sorted, error) {
	s := newSorted()
	rs := renames(l)
	for _, stored := range sortedKeys(raw) {
		name := flextrainName(stored, rs)
		if why := ignoreReason(name, l); why != "" {
			s.ignored = append(s.ignored, Ignored{Name: stored, Folder: folder, Reason: why})
			continue
		}
		if prev, dup := s.origin[name]; dup {
			return s, fmt.Errorf("pretrained: %s: tensors %q and %q are both %s", src, prev.stored, stored, name)
		}
		s.tensors[name], s.origin[name] = raw[stored], origin{stored, src}
	}
	return s, nil
}

// split moves the tensors whose flextrain name starts with prefix out of s, into a new sorted.
func (s *sorted) split(prefix string) sorted {
	out := newSorted()
	for name, t := range s.tensors {
		if strings.HasPrefix(name, prefix) {
			out.tensors[name], out.origin[name] = t, s.origin[name]
			delete(s.tensors, name)
			delete(s.origin, name)
		}
	}
	return out
}

// add moves every tensor of o into s (their names differ: o holds the tower, s the rest).
func (s *sorted) add(o sorted) {
	for name, t := range o.tensors {
		s.tensors[name], s.origin[name] = t, o.origin[name]
	}
	s.ignored = append(s.ignored, o.ignored...)
}

// ignoreAll lists every tensor of s as ignored, for the given reason.
func (s sorted) ignoreAll(folder, why string) []Ignored {
	var out []Ignored
	for _, name := range sortedKeys(s.tensors) {
		out = append(out, Ignored{Name: s.origin[name].stored, Folder: folder, Reason: why})
	}
	return out
}
