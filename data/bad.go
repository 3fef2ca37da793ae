package data

import (
	"errors"
	"fmt"
	"log/slog"
	"maps"
)

// Reasons a sample is bad. They are the keys of Counts.Bad and appear in logs and checkpoints.
const (
	ReasonMissing        = "missing"               // image file absent (even with the fallback extensions) or not a regular file
	ReasonDecode         = "decode"                // image undecodable or truncated
	ReasonOutside        = "path_outside_folder"   // image path escapes image_folder (never opened)
	ReasonTooLarge       = "image_too_large"       // header past MaxImageSide or the budget of Options.ImageMaxPixels
	ReasonEmpty          = "empty_conversation"    // no turns, or no text at all
	ReasonMalformed      = "malformed_record"      // wrong JSON shape, bad roles, template refusal
	ReasonRecordTooLarge = "record_too_large"      // JSON text past Options.MaxRecordBytes (never decoded)
	ReasonTooLong        = "too_long"              // every supervised token lies past model_max_length
	ReasonMismatch       = "tokenization_mismatch" // kept fully masked, as LLaVA does, but counted
	defaultLogBad        = 10                      // bad samples logged one by one before going quiet
	maxConsecutiveBad    = 100                     // Energon's failure_tolerance
)

// Policies for bad samples.
const (
	PolicySkip = "skip" // skip, count by reason, log the first few (the default)
	PolicyFail = "fail" // stop at the first bad sample
)

// Sentinel errors of the bad-sample policy.
var (
	ErrBadSample  = errors.New("data: bad sample")
	ErrSkipBudget = errors.New("data: too many bad samples")
)

// BadSample says why one record cannot be trained on. It is an error wrapping ErrBadSample.
type BadSample struct {
	Record int    // index of the record in the data file
	ID     string // the record's id
	File   string // the image file involved, or the data file
	Reason string // one of the Reason constants
	Err    error  // the underlying cause
}

// Error names the record, the file and the reason.
func (b *BadSample) Error() string {
	return fmt.Sprintf("data: bad sample %q (record %d, %s): %s: %v", b.ID, b.Record, b.File, b.Reason, b.Err)
}

// Unwrap lets errors.Is match ErrBadSample and the cause (ErrImageMissing, …).
func (b *BadSample) Unwrap() []error { return []error{ErrBadSample, b.Err} }

// Counts are the loader's counters. They are JSON-serialisable so that a checkpoint can hold them and a
// resumed run reports totals since the start.
type Counts struct {
	Records   int            `json:"records"`    // records looked at, good or bad
	Samples   int            `json:"samples"`    // samples delivered in batches
	WithImage int            `json:"with_image"` // delivered samples with an image
	TextOnly  int            `json:"text_only"`  // delivered samples without one
	Tokens    int64          `json:"tokens"`     // delivered sequence tokens, image tokens expanded
	Truncated int            `json:"truncated"`  // delivered samples cut to model_max_length
	Skipped   int            `json:"skipped"`    // records skipped as bad
	Bad       map[string]int `json:"bad"`        // by reason; all but tokenization_mismatch were skipped
}

// clone returns a deep copy.
func (c Counts) clone() Counts {
	c.Bad = maps.Clone(c.Bad)
	if c.Bad == nil {
		c.Bad = map[string]int{}
	}
	return c
}

// badTracker applies the policy and the skip budget to a stream of bad samples.
type badTracker struct {
	policy        string
	maxFraction   float64 // of records; checked once minRecords were seen
	minRecords    int
	noConsecutive bool // Check counts everything, however many in a row
	consecutive   int
	logged        int
	log           *slog.Logger
}

// record counts b into c and decides whether the loader must stop. Under skip it returns nil until the
// budget is exhausted; under fail it returns b.
func (t *badTracker) record(c *Counts, b *BadSample, skipped bool) error {
	c.Bad[b.Reason]++
	if t.logged < defaultLogBad && t.log != nil {
		t.logged++
		t.log.Warn("bad sample", "id", b.ID, "record", b.Record, "file", b.File, "reason", b.Reason, "err", b.Err,
			"skipped", skipped)
	}
	if t.policy == PolicyFail {
		return b
	}
	if !skipped {
		return nil
	}
	c.Skipped++
	t.consecutive++
	if t.consecutive > maxConsecutiveBad && !t.noConsecutive {
		return fmt.Errorf("%w: more than %d in a row, the last %w", ErrSkipBudget, maxConsecutiveBad, b)
	}
	if c.Records >= t.minRecords && float64(c.Skipped) > t.maxFraction*float64(c.Records) {
		return fmt.Errorf("%w: %d of %d records skipped, above max_bad_fraction %g; the last %w",
			ErrSkipBudget, c.Skipped, c.Records, t.maxFraction, b)
	}
	return nil
}

// good resets the run of consecutive bad samples.
func (t *badTracker) good() { t.consecutive = 0 }
