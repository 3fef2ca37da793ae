package data

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"

	"github.com/flextrain/flextrain/internal/llava"
)

// Check reads every record of the data file once, as training would (templates, lengths, image decoding;
// no resizing), and returns the counters: the pre-flight check behind `flextrain data check`. The skip
// budget does not apply; under PolicyFail the first bad sample is the error.
func Check(ctx context.Context, opts Options) (Counts, error) {
	opts.Split, opts.Once, opts.Rank, opts.WorldSize, opts.ValSize = SplitAll, true, 0, 1, 0
	opts.MaxBadFraction = 1
	if opts.BatchSize <= 0 {
		opts.BatchSize = 64
	}
	l, err := Open(opts)
	if err != nil {
		return Counts{}, err
	}
	defer l.Close()
	l.proc.noPixels = true
	l.track.minRecords = math.MaxInt
	l.track.noConsecutive = true
	for {
		if _, err := l.Next(ctx); err != nil {
			if errors.Is(err, io.EOF) {
				return l.Counts(), nil
			}
			return l.Counts(), err
		}
	}
}

// Inspection is one assembled sample, JSON-able, for `flextrain data inspect`.
type Inspection struct {
	Record        int        `json:"record"`
	ID            string     `json:"id"`
	ImageField    string     `json:"image_field,omitempty"`
	ImageFile     string     `json:"image_file,omitempty"`
	Conversations []Turn     `json:"conversations"`
	Bad           string     `json:"bad,omitempty"` // reason, when the sample is bad
	Error         string     `json:"error,omitempty"`
	InputIDs      []int      `json:"input_ids"`
	Labels        []int      `json:"labels"`
	SeqLen        int        `json:"seq_len"`      // image tokens expanded
	ImageTokens   int        `json:"image_tokens"` // n = (S/P)² per image
	Truncated     bool       `json:"truncated"`
	Prompt        string     `json:"prompt"`  // the decoded ids, the image marker as <image>
	Targets       []string   `json:"targets"` // the decoded supervised spans
	OriSize       [2]int     `json:"ori_size"`
	HR            *PixelInfo `json:"hr,omitempty"`
	LR            *PixelInfo `json:"lr,omitempty"`
}

// PixelInfo summarises a [3, side, side] pixel tensor per channel.
type PixelInfo struct {
	Shape []int      `json:"shape"`
	Min   [3]float32 `json:"min"`
	Max   [3]float32 `json:"max"`
	Mean  [3]float64 `json:"mean"`
}

// Inspect assembles record number index (0-based, file order) as training would and describes it. A bad
// record is described too, with its reason; err is for options and I/O.
func Inspect(opts Options, index int) (*Inspection, error) {
	opts.Split, opts.Once, opts.WorldSize, opts.Rank, opts.BatchSize = SplitAll, true, 1, 0, max(opts.BatchSize, 1)
	l, err := Open(opts)
	if err != nil {
		return nil, err
	}
	defer l.Close()
	if index < 0 || index >= len(l.ix.entries) {
		return nil, fmt.Errorf("data: inspect %s: record %d outside 0…%d", opts.DataPath, index, len(l.ix.entries)-1)
	}
	rec, _, err := l.ix.readRecord(l.file, index)
	if err != nil {
		return nil, err
	}
	s, bad, err := l.proc.load(index)
	if err != nil {
		return nil, err
	}
	in := &Inspection{Record: index, ID: string(rec.ID), ImageField: rec.Image, Conversations: rec.Conversations,
		ImageTokens: l.proc.nImage}
	if bad != nil {
		in.Bad, in.Error = bad.Reason, bad.Error()
	}
	if s != nil {
		l.describe(in, s)
	}
	return in, nil
}

// describe fills the token and pixel parts of an inspection.
func (l *Loader) describe(in *Inspection, s *Sample) {
	in.ImageFile, in.InputIDs, in.Labels, in.Truncated = s.Image, s.InputIDs, s.Labels, s.Truncated
	in.SeqLen = SeqLen(s.InputIDs, l.proc.nImage)
	var parts []string
	for _, seg := range splitOn(s.InputIDs, llava.ImageTokenID) {
		parts = append(parts, l.tok.Decode(seg))
	}
	in.Prompt = strings.Join(parts, "<image>")
	var span []int
	for i, lab := range append(s.Labels, llava.IgnoreIndex) {
		if lab != llava.IgnoreIndex {
			span = append(span, s.InputIDs[i])
			continue
		}
		if len(span) > 0 {
			in.Targets, span = append(in.Targets, l.tok.Decode(span)), nil
		}
	}
	if s.Pixels != nil {
		in.OriSize = s.Pixels.OriSize
		in.HR = pixelInfo(s.Pixels.HR, l.opts.Zoom*l.opts.ImageSize)
		in.LR = pixelInfo(s.Pixels.LR, l.opts.ImageSize)
	}
}

// splitOn cuts ids at every sep.
func splitOn(ids []int, sep int) [][]int {
	out := [][]int{nil}
	for _, id := range ids {
		if id == sep {
			out = append(out, nil)
			continue
		}
		out[len(out)-1] = append(out[len(out)-1], id)
	}
	return out
}

// pixelInfo computes per-channel min, max and mean of a [3, side, side] tensor.
func pixelInfo(t []float32, side int) *PixelInfo {
	p := &PixelInfo{Shape: []int{3, side, side}}
	plane := side * side
	for c := range 3 {
		ch := t[c*plane : (c+1)*plane]
		p.Min[c], p.Max[c] = ch[0], ch[0]
		sum := 0.0
		for _, v := range ch {
			p.Min[c], p.Max[c] = min(p.Min[c], v), max(p.Max[c], v)
			sum += float64(v)
		}
		p.Mean[c] = sum / float64(plane)
	}
	return p
}
