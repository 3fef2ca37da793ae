package data

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/flextrain/flextrain/data/tokenizer"
	"github.com/flextrain/flextrain/internal/llava"
)

// Sample is one record made ready for the model: token ids with the image marker, labels and pixels.
type Sample struct {
	Record    int               // index of the record in the data file
	ID        string            // the record's id
	Image     string            // resolved image file, "" for text-only
	InputIDs  []int             // llava.ImageTokenID marks the image
	Labels    []int             // llava.IgnoreIndex where unsupervised
	Pixels    *Pixels           // nil for text-only, and when pixels were not asked for
	Truncated bool              // cut to model_max_length
	Mismatch  bool              // LLaVA's tokenization mismatch: kept, fully masked
	Tags      map[string]string // the record's tags (Record.Tags), nil without
	Box       []int             // the record's box (Record.Box), nil without
}

// SeqLen is the length the model sees: the image marker expands to n image tokens.
func SeqLen(ids []int, n int) int {
	l := len(ids)
	for _, id := range ids {
		if id == llava.ImageTokenID {
			l += n - 1
		}
	}
	return l
}

// processor turns record indices into Samples. It is safe for concurrent use.
type processor struct {
	ix        *index
	file      io.ReaderAt // the data file, read with ReadAt
	tok       *tokenizer.Tokenizer
	folder    string
	s, z      int   // LR side and zoom
	nImage    int   // image tokens per image: (S/P)²
	maxLen    int   // model_max_length; ≤ 0: no limit
	maxPixels int64 // image budget, Options.ImageMaxPixels
	noPixels  bool  // decode images (to find bad ones) but skip resizing: for Check
}

// load reads record i. A bad record gives a *BadSample; a kept sample with a tokenization mismatch gives
// both the sample and its BadSample; err is fatal (the data file cannot be read).
func (p *processor) load(i int) (*Sample, *BadSample, error) {
	rec, recErr, err := p.ix.readRecord(p.file, i)
	if err != nil {
		return nil, nil, err
	}
	bad := func(reason, file string, cause error) (*Sample, *BadSample, error) {
		return nil, &BadSample{Record: i, ID: string(rec.ID), File: file, Reason: reason, Err: cause}, nil
	}
	if errors.Is(recErr, ErrRecordTooLarge) {
		return bad(ReasonRecordTooLarge, p.ix.path, recErr)
	}
	if recErr != nil {
		return bad(ReasonMalformed, p.ix.path, recErr)
	}
	if emptyConversation(rec.Conversations) {
		return bad(ReasonEmpty, p.ix.path, errors.New("no turn with text"))
	}
	s, reason, cause := p.tokens(rec)
	if reason != "" {
		return bad(reason, p.ix.path, cause)
	}
	s.Record, s.ID, s.Tags, s.Box = i, string(rec.ID), rec.Tags, rec.Box
	if rec.Image != "" {
		if reason, file, cause := p.image(s, rec.Image); reason != "" {
			return bad(reason, file, cause)
		}
	}
	if s.Mismatch {
		return s, &BadSample{Record: i, ID: s.ID, File: p.ix.path, Reason: ReasonMismatch,
			Err: errors.New("template round lengths disagree with the tokenised prompt; sample fully masked")}, nil
	}
	return s, nil, nil
}

// emptyConversation is true when no turn carries any text.
func emptyConversation(turns []Turn) bool {
	return !slices.ContainsFunc(turns, func(t Turn) bool { return strings.TrimSpace(t.Value) != "" })
}

// tokens applies the template and the length limit.
func (p *processor) tokens(rec Record) (*Sample, string, error) {
	hasImage := rec.Image != ""
	ids, labels, mismatch, err := Preprocess(p.tok, rec.Conversations, hasImage)
	if err != nil {
		return nil, ReasonMalformed, err
	}
	if got, want := countImage(ids), boolInt(hasImage); got != want {
		return nil, ReasonMalformed, fmt.Errorf("template gave %d image markers, want %d", got, want)
	}
	supervised := hasSupervised(labels)
	ids, labels, truncated, err := truncate(ids, labels, p.maxLen, p.nImage)
	if err != nil {
		return nil, ReasonTooLong, err
	}
	if supervised && !hasSupervised(labels) {
		return nil, ReasonTooLong, fmt.Errorf("every supervised token lies past model_max_length %d", p.maxLen)
	}
	return &Sample{InputIDs: ids, Labels: labels, Truncated: truncated, Mismatch: mismatch}, "", nil
}

// image resolves, decodes and (unless noPixels) preprocesses the sample's image.
func (p *processor) image(s *Sample, rel string) (reason, file string, err error) {
	path, err := ResolveImage(p.folder, rel)
	if err != nil {
		return imageReason(err), rel, err
	}
	img, err := LoadImageWithin(path, p.maxPixels)
	if err != nil {
		return imageReason(err), path, err
	}
	s.Image = path
	if p.noPixels {
		return "", "", nil
	}
	px, err := PreprocessImage(img, p.s, p.z)
	if err != nil {
		return imageReason(err), path, err
	}
	s.Pixels = &px
	return "", "", nil
}

// imageReason maps the image sentinel errors to bad-sample reasons.
func imageReason(err error) string {
	switch {
	case errors.Is(err, ErrImageOutside):
		return ReasonOutside
	case errors.Is(err, ErrImageMissing):
		return ReasonMissing
	case errors.Is(err, ErrImageTooLarge):
		return ReasonTooLarge
	default:
		return ReasonDecode
	}
}

// truncate cuts ids and labels so that the expanded length fits maxLen. The image marker is never split:
// when it does not fit, the sample is too long.
func truncate(ids, labels []int, maxLen, nImage int) ([]int, []int, bool, error) {
	if maxLen <= 0 || SeqLen(ids, nImage) <= maxLen {
		return ids, labels, false, nil
	}
	used := 0
	for k, id := range ids {
		cost := 1
		if id == llava.ImageTokenID {
			cost = nImage
		}
		if used+cost > maxLen {
			if slices.Contains(ids[k:], llava.ImageTokenID) {
				return nil, nil, false, fmt.Errorf("the image (%d tokens at position %d) does not fit model_max_length %d", nImage, used, maxLen)
			}
			return ids[:k:k], labels[:k:k], true, nil
		}
		used += cost
	}
	return ids, labels, false, nil
}

func countImage(ids []int) int {
	n := 0
	for _, id := range ids {
		if id == llava.ImageTokenID {
			n++
		}
	}
	return n
}

func hasSupervised(labels []int) bool {
	return slices.ContainsFunc(labels, func(l int) bool { return l != llava.IgnoreIndex })
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
