package data

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"

	"github.com/flextrain/flextrain/data/tokenizer"
	"github.com/flextrain/flextrain/internal/fileio"
)

// Splits of the data file, chosen by Options.Split.
const (
	SplitTrain = "train" // every record not held out by val_size (the default)
	SplitVal   = "val"   // the val_size records held out, chosen by the seed
	SplitAll   = "all"   // every record
)

// Defaults applied by Open to zero-valued options.
const (
	DefaultMaxBadFraction = 0.1 // skip at most a tenth of the records…
	DefaultMinRecords     = 100 // …once this many were seen
	// DefaultMaxRecordBytes is Options.MaxRecordBytes when zero: 1 MiB, hundreds of times a LLaVA record
	// (a few KB), while a record past it would cost seconds and many times its size to decode and tokenise.
	DefaultMaxRecordBytes = 1 << 20
)

// ErrEmpty is returned when the chosen split of the data file has no record.
var ErrEmpty = errors.New("data: no records")

// Options configure a Loader. Zero values take the defaults named on each field.
type Options struct {
	DataPath       string               // LLaVA JSON array or JSON Lines
	ImageFolder    string               // image paths in the records are relative to it
	TokenizerPath  string               // tokenizer.json or tokenizer.model; ignored when Tokenizer is set
	Tokenizer      *tokenizer.Tokenizer // a loaded tokenizer, shared read-only
	ImageSize      int                  // S, the LR side
	Zoom           int                  // Z: the HR side is Z·S
	PatchSize      int                  // P: an image expands to (S/P)² tokens
	ModelMaxLength int                  // in tokens, image tokens expanded; ≤ 0: no limit
	BatchSize      int                  // per rank
	Seed           uint64               // shuffle and val split
	Shuffle        bool                 // a new permutation per epoch, from (Seed, epoch)
	// GroupByModalityLength puts image and text-only samples in separate mega-batches (LLaVA).
	GroupByModalityLength bool
	Rank, WorldSize       int     // sharding; WorldSize 0 means 1
	Policy                string  // PolicySkip (default) or PolicyFail
	MaxBadFraction        float64 // skip budget as a fraction of records; 0: DefaultMaxBadFraction
	MinRecords            int     // records seen before MaxBadFraction applies; 0: DefaultMinRecords
	Workers               int     // image decoding goroutines; 0: GOMAXPROCS
	Prefetch              int     // records loaded ahead; 0: two batches
	ValSize               float64 // held-out records: a count when ≥ 1, a fraction when in (0, 1)
	Split                 string  // SplitTrain (default), SplitVal or SplitAll
	Once                  bool    // one pass in file order, then io.EOF: for evaluation and checks
	// ImageMaxPixels is the budget of one image (config image_max_pixels): at most this many pixels in
	// the square it is padded to, max(w, h)², and 4 bytes a pixel decoded. A larger image is a bad sample
	// (image_too_large), refused on its header before any pixel is decoded. 0: DefaultImageMaxPixels; at
	// most MaxImagePixels.
	ImageMaxPixels int64
	// MaxRecordBytes bounds the JSON text of one record (config max_record_bytes). A longer record is a
	// bad sample (record_too_large): the index pass skips it while reading, holding at most this many
	// bytes of it, and it is never decoded nor tokenised. 0: DefaultMaxRecordBytes.
	MaxRecordBytes int64
	Logger         *slog.Logger
}

// withDefaults fills the zero values.
func (o Options) withDefaults() Options {
	o.WorldSize = cmpOr(o.WorldSize, 1)
	o.Policy = cmpOr(o.Policy, PolicySkip)
	o.MaxBadFraction = cmpOr(o.MaxBadFraction, DefaultMaxBadFraction)
	o.MinRecords = cmpOr(o.MinRecords, DefaultMinRecords)
	o.Workers = cmpOr(o.Workers, runtime.GOMAXPROCS(0))
	o.Prefetch = cmpOr(o.Prefetch, 2*max(o.BatchSize, o.Workers))
	o.Split = cmpOr(o.Split, SplitTrain)
	o.ImageMaxPixels = cmpOr(o.ImageMaxPixels, DefaultImageMaxPixels)
	o.MaxRecordBytes = cmpOr(o.MaxRecordBytes, DefaultMaxRecordBytes)
	return o
}

func cmpOr[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// validate returns one error per bad field.
func (o Options) validate() error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf("data: options: "+format, a...)) }
	if o.DataPath == "" {
		bad("data_path is empty")
	}
	if o.Tokenizer == nil && o.TokenizerPath == "" {
		bad("no tokenizer and no tokenizer_path")
	}
	for _, f := range []struct {
		name string
		v    int
	}{{"image_size", o.ImageSize}, {"zoom", o.Zoom}, {"patch_size", o.PatchSize}, {"batch_size", o.BatchSize}, {"workers", o.Workers}, {"prefetch", o.Prefetch}} {
		if f.v <= 0 {
			bad("%s must be positive, got %d", f.name, f.v)
		}
	}
	if o.PatchSize > 0 && o.ImageSize%o.PatchSize != 0 {
		bad("image_size %d is not a multiple of patch_size %d", o.ImageSize, o.PatchSize)
	}
	if o.WorldSize < 1 || o.Rank < 0 || o.Rank >= o.WorldSize {
		bad("rank %d is outside world size %d", o.Rank, o.WorldSize)
	}
	if o.Policy != PolicySkip && o.Policy != PolicyFail {
		bad("policy %q is not %q or %q", o.Policy, PolicySkip, PolicyFail)
	}
	if o.MaxBadFraction < 0 || o.MaxBadFraction > 1 {
		bad("max_bad_fraction must be in [0, 1], got %g", o.MaxBadFraction)
	}
	if o.ImageMaxPixels < 1 || o.ImageMaxPixels > MaxImagePixels {
		bad("image_max_pixels must be in [1, %d], got %d", MaxImagePixels, o.ImageMaxPixels)
	}
	if o.MaxRecordBytes < 1 {
		bad("max_record_bytes must be positive, got %d", o.MaxRecordBytes)
	}
	if o.Split != SplitTrain && o.Split != SplitVal && o.Split != SplitAll {
		bad("split %q is not %q, %q or %q", o.Split, SplitTrain, SplitVal, SplitAll)
	}
	return errors.Join(errs...)
}

// Loader delivers batches for one rank, endlessly across epochs (or once, see Options.Once). Its position
// is a Cursor and its counters are Counts; both go into checkpoints. A Loader is not safe for concurrent
// use; it runs its own worker goroutines, which Close stops.
type Loader struct {
	opts    Options
	ix      *index
	tok     *tokenizer.Tokenizer
	file    *os.File
	proc    *processor
	ord     *orderer
	val     []int // held-out records, for Val
	perRank int
	cursor  Cursor
	counts  Counts
	track   badTracker
	pipe    *pipeline
	err     error // sticky: a fatal error or the bad-sample policy stopped the loader
}

// Open indexes the data file (one streaming pass), loads the tokenizer and prepares the order. Nothing
// is decoded until the first Next.
func Open(opts Options) (*Loader, error) {
	opts = opts.withDefaults()
	if err := opts.validate(); err != nil {
		return nil, err
	}
	tok := opts.Tokenizer
	if tok == nil {
		var err error
		if tok, err = tokenizer.Load(opts.TokenizerPath); err != nil {
			return nil, fmt.Errorf("data: open loader: %w", err)
		}
	}
	ix, err := buildIndex(opts.DataPath, opts.MaxRecordBytes)
	if err != nil {
		return nil, err
	}
	return newLoader(opts, ix, tok)
}

// newLoader builds a Loader over an existing index.
func newLoader(opts Options, ix *index, tok *tokenizer.Tokenizer) (*Loader, error) {
	train, val, err := splitRecords(len(ix.entries), opts.ValSize, opts.Seed)
	if err != nil {
		return nil, err
	}
	records := train
	switch opts.Split {
	case SplitVal:
		records = val
	case SplitAll:
		records = allRecords(len(ix.entries))
	}
	if len(records) == 0 {
		return nil, fmt.Errorf("%w: %s split of %s is empty", ErrEmpty, opts.Split, ix.path)
	}
	f, err := fileio.Open(ix.path)
	if err != nil {
		return nil, fmt.Errorf("data: open %s: %w", ix.path, err)
	}
	l := &Loader{opts: opts, ix: ix, tok: tok, file: f, val: val, counts: Counts{}.clone()}
	l.proc = &processor{ix: ix, file: f, tok: tok, folder: opts.ImageFolder, s: opts.ImageSize, z: opts.Zoom,
		nImage: (opts.ImageSize / opts.PatchSize) * (opts.ImageSize / opts.PatchSize), maxLen: opts.ModelMaxLength,
		maxPixels: opts.ImageMaxPixels}
	l.ord = &orderer{records: records, seed: opts.Seed, shuffle: opts.Shuffle && !opts.Once, group: opts.GroupByModalityLength,
		rank: opts.Rank, world: opts.WorldSize, batch: opts.BatchSize}
	l.ord.lengths, l.ord.images = ix.lengthsAndImages()
	l.perRank = l.ord.perRank()
	l.track = badTracker{policy: opts.Policy, maxFraction: opts.MaxBadFraction, minRecords: opts.MinRecords, log: opts.Logger}
	return l, nil
}

func allRecords(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i
	}
	return out
}

// lengthsAndImages lists the modality length and the image flag of every record.
func (ix *index) lengthsAndImages() ([]int32, []bool) {
	lengths, images := make([]int32, len(ix.entries)), make([]bool, len(ix.entries))
	for i, e := range ix.entries {
		lengths[i], images[i] = e.words, e.image
	}
	return lengths, images
}

// Val returns a Loader over the held-out validation records that reads them once, in file order, with the
// same options otherwise; it shares the index and the tokenizer. ErrEmpty when val_size is 0.
func (l *Loader) Val() (*Loader, error) {
	o := l.opts
	o.Split, o.Once, o.Shuffle = SplitVal, true, false
	return newLoader(o, l.ix, l.tok)
}

// Records is the number of records in the data file, good or bad, all splits.
func (l *Loader) Records() int { return len(l.ix.entries) }

// StepsPerEpoch is the number of batches per epoch on this rank: ⌈records per rank / batch size⌉. A batch
// is a window of BatchSize records of the rank's order, less its bad ones; a window with no good record
// yields no batch, so an epoch can have fewer batches.
func (l *Loader) StepsPerEpoch() int { return (l.perRank + l.opts.BatchSize - 1) / l.opts.BatchSize }

// Cursor is the position after the last batch returned: restoring it continues with the next one.
func (l *Loader) Cursor() Cursor { return l.cursor }

// Counts returns a copy of the counters.
func (l *Loader) Counts() Counts { return l.counts.clone() }

// RestoreCounts sets the counters, typically from a checkpoint next to the cursor.
func (l *Loader) RestoreCounts(c Counts) { l.counts = c.clone() }

// Restore moves the loader to c. The next batch is the one an uninterrupted run would have produced after
// the batch that c was taken from, bad samples skipped the same way.
func (l *Loader) Restore(c Cursor) error {
	if c.Epoch < 0 || c.Position < 0 || c.Position > l.perRank || (l.opts.Once && c.Epoch > 1) {
		return fmt.Errorf("data: restore cursor %+v: outside epoch length %d", c, l.perRank)
	}
	l.stopPipeline()
	l.cursor, l.err = normalize(c, l.perRank), nil
	return nil
}

// normalize moves a cursor at the end of an epoch to the start of the next.
func normalize(c Cursor, perEpoch int) Cursor {
	if c.Position >= perEpoch {
		return Cursor{Epoch: c.Epoch + 1}
	}
	return c
}

// Close stops the workers and closes the data file.
func (l *Loader) Close() error {
	l.stopPipeline()
	if err := l.file.Close(); err != nil {
		return fmt.Errorf("data: close %s: %w", l.ix.path, err)
	}
	return nil
}

func (l *Loader) stopPipeline() {
	if l.pipe != nil {
		l.pipe.stop()
		l.pipe = nil
	}
}

// Next returns the next batch: the good samples of the next window of BatchSize records, skipping windows
// with none. With Once it returns io.EOF after the first epoch. An error from the bad-sample policy, the
// skip budget or the data file is sticky; a cancelled ctx is not (the window is read again).
func (l *Loader) Next(ctx context.Context) (*Batch, error) {
	if l.err != nil {
		return nil, l.err
	}
	if err := ctx.Err(); err != nil {
		return nil, err // before the pipeline: a ready result must not outrun a cancelled context
	}
	for {
		if l.opts.Once && l.cursor.Epoch > 0 {
			return nil, io.EOF
		}
		if l.pipe == nil {
			l.pipe = startPipeline(l.proc, l.ord, l.cursor, l.opts.Once, l.opts.Workers, l.opts.Prefetch)
		}
		samples, counts, tracker, err := l.window(ctx)
		if err != nil {
			l.stopPipeline()
			if ctx.Err() == nil {
				l.err = err
			}
			return nil, err
		}
		l.counts, l.track = counts, tracker
		l.cursor = normalize(Cursor{Epoch: l.cursor.Epoch, Position: l.cursor.Position + l.opts.BatchSize}, l.perRank)
		if len(samples) > 0 {
			return collate(samples, l.tok.PAD()), nil
		}
	}
}

// window consumes the records of the window at the cursor and returns its good samples with the counters
// and tracker as they stand after it (committed by the caller only when the whole window succeeded).
func (l *Loader) window(ctx context.Context) ([]*Sample, Counts, badTracker, error) {
	c, t := l.counts.clone(), l.track
	end := min(l.cursor.Position+l.opts.BatchSize, l.perRank)
	var samples []*Sample
	for range end - l.cursor.Position {
		r, err := l.pipe.get(ctx)
		if err != nil {
			return nil, c, t, err
		}
		s, err := l.account(&c, &t, r)
		if err != nil {
			return nil, c, t, err
		}
		if s != nil {
			samples = append(samples, s)
		}
	}
	return samples, c, t, nil
}

// account counts one loaded record and applies the bad-sample policy.
func (l *Loader) account(c *Counts, t *badTracker, r result) (*Sample, error) {
	if r.err != nil {
		return nil, r.err
	}
	c.Records++
	if r.sample == nil {
		return nil, t.record(c, r.bad, true)
	}
	if r.bad != nil {
		if err := t.record(c, r.bad, false); err != nil {
			return nil, err
		}
	}
	t.good()
	s := r.sample
	c.Samples++
	c.Tokens += int64(SeqLen(s.InputIDs, l.proc.nImage))
	if s.Image != "" {
		c.WithImage++
	} else {
		c.TextOnly++
	}
	if s.Truncated {
		c.Truncated++
	}
	return s, nil
}
