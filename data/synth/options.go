package synth

import (
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
)

// ErrOptions reports options that Generate refuses (a size out of range, a fraction outside [0, 1]).
var ErrOptions = errors.New("synth: invalid options")

// ErrURI reports a synth:// data path that ParseURI cannot read: an unknown key, a malformed value.
var ErrURI = errors.New("synth: malformed synth:// URI")

// URIScheme begins a data path that names a generated dataset instead of a file, as in
// "synth://n=2000,seed=1,hr=192".
const URIScheme = "synth://"

// Options say which dataset Generate writes. The fields with JSON tags define the dataset and are stored in
// Dir/synth.json under the same names as the synth:// keys; Dir and Workers only say where and how fast, so
// they are not part of it. Validate's messages name fields by those keys.
type Options struct {
	Dir     string `json:"-"` // output folder; created when missing
	Workers int    `json:"-"` // image-drawing goroutines; 0 means GOMAXPROCS. Never changes the output.

	N     int    `json:"n"`    // training samples
	ValN  int    `json:"val"`  // validation samples
	TestN int    `json:"test"` // test samples
	Seed  uint64 `json:"seed"` // the whole dataset is a function of Seed and the fields below

	HRSize int `json:"hr"`   // long side of every image = the HR side Z·S, so the loader never rescales it
	Zoom   int `json:"zoom"` // Z: large glyphs are drawn Z times bigger than small ones

	SmallFrac float64 `json:"small"`      // share of the image questions that ask about a small object
	TextFrac  float64 `json:"text"`       // share of all samples that are text-only
	MinAspect float64 `json:"min_aspect"` // shortest allowed short-side / long-side ratio of an image
	Clutter   int     `json:"clutter"`    // most background distractors (outlines, lines, stray glyphs) per image
	// Others is the most extra shapes, and separately the most extra signs, placed beside the question's
	// target (0 leaves the target alone: an easier set for training a vision tower from scratch).
	Others int `json:"others"`
	// Snap, when not 0, places every sign so that its text starts on a grid of Snap·scale pixels of the
	// padded square (Snap = the vision tower's patch size): a large sign's text then lies in the LR view
	// as a small one's lies in an HR crop, in the same place within a patch, which a tower trained for
	// minutes from scratch needs to transfer reading from one to the other. 0 places signs anywhere.
	Snap int `json:"snap,omitempty"`
	// Asks, when above 1, is the most questions per training image: after the sampled question come
	// follow-ups, in turns of the same conversation, about the other objects and the target's other
	// attribute (never small text when SmallFrac is 0). A from-scratch model learns several times more per
	// step from them; validation and test keep one question per image, so exact match scores one answer.
	Asks int `json:"asks,omitempty"`
	// Center is the share of training image records whose question's target sits at the centre of the
	// image (validation and test never). A tower and decoder trained from scratch must find an object
	// before they can learn what it looks like: on a shape-only set they stayed at chance with every
	// shape placed at random, and reached 77% on randomly placed test shapes with half the training
	// shapes centred. 0 leaves every image byte-identical.
	Center float64 `json:"center,omitempty"`
	// Signs, when not 0, makes every image a board (board.go): two large signs and ⌈Signs/2⌉…Signs small
	// ones (at least 2), each of its own colour, the question naming one by its colour. Records then carry
	// every other sign's box ("others"), and follow-ups ask for a sign's row, column and the signs' count.
	// 0 draws the usual scenes.
	Signs int `json:"signs,omitempty"`
}

// DefaultOptions returns the demo dataset: 2000/200/200 samples of 192-pixel images (S = 64, Z = 3), half of
// the image questions about small text, one sample in ten text-only. Dir is left empty for the caller.
func DefaultOptions() Options {
	return Options{
		N: 2000, ValN: 200, TestN: 200, Seed: 1,
		HRSize: 192, Zoom: 3,
		SmallFrac: 0.5, TextFrac: 0.1, MinAspect: 0.6, Clutter: 12, Others: 2,
	}
}

// Limits on the options. minHRSize leaves room for a large glyph sign (about 40 pixels at Z = 3) beside two
// other objects; maxHRSize and maxSamples keep a typo from filling the disk.
const (
	minHRSize  = 64
	maxHRSize  = 4096
	minZoom    = 2
	maxZoom    = 8
	maxSamples = 10_000_000
	maxClutter = 200
	maxOthers  = 8
	maxSnap    = 64
	maxAsks    = 16
	maxSigns   = 10 // the palette's 11 colours, one for the large sign
)

// Validate returns every problem with o, one per line, each wrapping ErrOptions, or nil.
func (o Options) Validate() error {
	var errs []error
	bad := func(field, format string, a ...any) {
		errs = append(errs, fmt.Errorf("%w: %s: %s", ErrOptions, field, fmt.Sprintf(format, a...)))
	}
	for _, c := range []struct {
		name string
		v    int
	}{{"n", o.N}, {"val", o.ValN}, {"test", o.TestN}} {
		if c.v < 0 || c.v > maxSamples {
			bad(c.name, "%d is outside 0…%d", c.v, maxSamples)
		}
	}
	if o.Zoom < minZoom || o.Zoom > maxZoom {
		bad("zoom", "%d is outside %d…%d", o.Zoom, minZoom, maxZoom)
	}
	if o.HRSize < minHRSize || o.HRSize > maxHRSize {
		bad("hr", "%d is outside %d…%d", o.HRSize, minHRSize, maxHRSize)
	} else if o.Zoom >= minZoom && o.Zoom <= maxZoom && o.HRSize%o.Zoom != 0 {
		bad("hr", "%d is not a multiple of zoom %d (the LR side S = hr/zoom)", o.HRSize, o.Zoom)
	}
	for _, c := range []struct {
		name   string
		v, min float64
	}{{"small", o.SmallFrac, 0}, {"text", o.TextFrac, 0}, {"min_aspect", o.MinAspect, 0.25}, {"center", o.Center, 0}} {
		if math.IsNaN(c.v) || c.v < c.min || c.v > 1 {
			bad(c.name, "%g is outside %g…1", c.v, c.min)
		}
	}
	if o.HRSize >= minHRSize && o.Zoom >= minZoom && o.Zoom <= maxZoom && o.MinAspect >= 0.25 && o.MinAspect <= 1 {
		if short, need := int(o.MinAspect*float64(o.HRSize)+0.5), largestSign(o.Zoom)+2; short < need {
			bad("min_aspect", "%g·hr = %d pixels cannot hold a large sign of %d pixels at zoom %d", o.MinAspect, short, need, o.Zoom)
		}
	}
	if o.Clutter < 0 || o.Clutter > maxClutter {
		bad("clutter", "%d is outside 0…%d", o.Clutter, maxClutter)
	}
	if o.Others < 0 || o.Others > maxOthers {
		bad("others", "%d is outside 0…%d", o.Others, maxOthers)
	}
	if o.Snap < 0 || o.Snap > maxSnap {
		bad("snap", "%d is outside 0…%d", o.Snap, maxSnap)
	}
	if o.Signs != 0 && (o.Signs < minSigns || o.Signs > maxSigns) {
		bad("signs", "%d is outside %d…%d (or 0: no boards)", o.Signs, minSigns, maxSigns)
	}
	if o.Asks < 0 || o.Asks > maxAsks {
		bad("asks", "%d is outside 0…%d", o.Asks, maxAsks)
	}
	if o.Workers < 0 {
		bad("workers", "%d is negative", o.Workers)
	}
	return errors.Join(errs...)
}

// IsURI reports whether a data path names a generated dataset ("synth://…").
func IsURI(path string) bool { return strings.HasPrefix(path, URIScheme) }

// uriKeys maps each synth:// key to the option it sets.
var uriKeys = map[string]func(o *Options, v string) error{
	"n":          intKey(func(o *Options) *int { return &o.N }),
	"val":        intKey(func(o *Options) *int { return &o.ValN }),
	"test":       intKey(func(o *Options) *int { return &o.TestN }),
	"hr":         intKey(func(o *Options) *int { return &o.HRSize }),
	"zoom":       intKey(func(o *Options) *int { return &o.Zoom }),
	"clutter":    intKey(func(o *Options) *int { return &o.Clutter }),
	"others":     intKey(func(o *Options) *int { return &o.Others }),
	"snap":       intKey(func(o *Options) *int { return &o.Snap }),
	"asks":       intKey(func(o *Options) *int { return &o.Asks }),
	"signs":      intKey(func(o *Options) *int { return &o.Signs }),
	"small":      floatKey(func(o *Options) *float64 { return &o.SmallFrac }),
	"text":       floatKey(func(o *Options) *float64 { return &o.TextFrac }),
	"min_aspect": floatKey(func(o *Options) *float64 { return &o.MinAspect }),
	"center":     floatKey(func(o *Options) *float64 { return &o.Center }),
	"seed": func(o *Options, v string) (err error) {
		o.Seed, err = strconv.ParseUint(v, 10, 64)
		return err
	},
	"dir": func(o *Options, v string) error {
		o.Dir = v
		return nil
	},
}

func intKey(field func(*Options) *int) func(*Options, string) error {
	return func(o *Options, v string) (err error) {
		*field(o), err = strconv.Atoi(v)
		return err
	}
}

func floatKey(field func(*Options) *float64) func(*Options, string) error {
	return func(o *Options, v string) (err error) {
		*field(o), err = strconv.ParseFloat(v, 64)
		return err
	}
}

// ParseURI reads a synth:// data path into Options: comma-separated key=value pairs over DefaultOptions.
// Keys: n, val, test (split sizes), seed, hr (HR side), zoom, small (SmallFrac), text (TextFrac),
// min_aspect, clutter, others, snap, asks, center, signs and dir (output folder; otherwise the caller sets Dir). An unknown
// or repeated key, a value that does not parse and options that fail Validate are errors naming the key.
//
//	opts, err := synth.ParseURI("synth://n=2000,seed=1,hr=192")
func ParseURI(uri string) (Options, error) {
	o := DefaultOptions()
	if !IsURI(uri) {
		return o, fmt.Errorf("%w: %q does not begin with %q", ErrURI, uri, URIScheme)
	}
	seen := map[string]bool{}
	for _, kv := range strings.Split(strings.TrimPrefix(uri, URIScheme), ",") {
		if kv == "" {
			continue
		}
		if err := setKey(&o, kv, seen); err != nil {
			return o, fmt.Errorf("%w: %s", ErrURI, err)
		}
	}
	if err := o.Validate(); err != nil {
		return o, fmt.Errorf("%w: %s: %w", ErrURI, uri, err)
	}
	return o, nil
}

// setKey applies one "key=value" pair.
func setKey(o *Options, kv string, seen map[string]bool) error {
	key, val, ok := strings.Cut(kv, "=")
	key = strings.TrimSpace(key)
	set, known := uriKeys[key]
	switch {
	case !ok:
		return fmt.Errorf("%q is not key=value", kv)
	case !known:
		return fmt.Errorf("unknown key %q (known: %s)", key, knownKeys())
	case seen[key]:
		return fmt.Errorf("key %q given twice", key)
	}
	seen[key] = true
	if err := set(o, strings.TrimSpace(val)); err != nil {
		return fmt.Errorf("key %q: bad value %q", key, val)
	}
	return nil
}

// knownKeys lists the URI keys, sorted, for error messages.
func knownKeys() string {
	return strings.Join(slices.Sorted(maps.Keys(uriKeys)), ", ")
}
