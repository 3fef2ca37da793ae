package train

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"

	"github.com/flextrain/flextrain/checkpoints"
	"github.com/flextrain/flextrain/data"
)

// stateLimits is what a checkpoint's trainer_state.json is checked against: the checkpoint's own step (its
// directory name and MANIFEST), the run's seed, and the records per epoch of this rank's data (the most a
// data cursor can have consumed of an epoch).
type stateLimits struct {
	step, seed, perEpoch int
	world                int // ranks of this run
}

// decodeState decodes trainer_state.json strictly (an unknown field is an error) and checks every field
// against lim and against the others. The checksums only say the file is the one the trainer wrote; a file
// crafted by hand and checksummed again must still not resume a run into nonsense (a negative optimizer
// step, a step that disagrees with the checkpoint, a cursor past the data). The error wraps
// checkpoints.ErrCorrupt and names every bad field.
func decodeState(b []byte, lim stateLimits) (State, error) {
	var st State
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&st); err != nil {
		return State{}, fmt.Errorf("%w: %w", checkpoints.ErrCorrupt, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return State{}, fmt.Errorf("%w: data after the JSON object", checkpoints.ErrCorrupt)
	}
	if err := st.check(lim); err != nil {
		return State{}, fmt.Errorf("%w: %w", checkpoints.ErrCorrupt, err)
	}
	return st, nil
}

// check returns one error per field of st that lim or the other fields contradict.
func (st State) check(lim stateLimits) error {
	var errs []error
	bad := func(field, format string, a ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, a...)))
	}
	if st.Step != lim.step {
		bad("global_step", "%d, but the checkpoint is of step %d", st.Step, lim.step)
	}
	if st.Seed != lim.seed {
		bad("seed", "%d, but the run's seed is %d", st.Seed, lim.seed)
	}
	st.checkSteps(bad)
	st.checkNumbers(bad)
	st.checkData(lim, bad)
	return errors.Join(errs...)
}

// checkSteps checks the step counters against each other: every step either updated the weights (and
// advanced AdamW's t), was skipped as non-finite, or had nothing supervised.
func (st State) checkSteps(bad badFunc) {
	if st.OptimizerStep < 0 || st.OptimizerStep > st.Step {
		bad("optimizer_step", "%d is outside 0…global_step (%d)", st.OptimizerStep, st.Step)
	}
	if st.SkippedNonFinite < 0 || st.SkippedNonFinite > st.Step-max(0, st.OptimizerStep) {
		bad("skipped_nonfinite", "%d is outside 0…global_step − optimizer_step", st.SkippedNonFinite)
	}
	if st.NonFiniteInRow < 0 || st.NonFiniteInRow >= maxNonFinite || st.NonFiniteInRow > st.SkippedNonFinite {
		bad("nonfinite_in_row", "%d is outside 0…min(%d, skipped_nonfinite)", st.NonFiniteInRow, maxNonFinite-1)
	}
	if st.BestStep < 0 || st.BestStep > st.Step || (st.BestStep > 0) != (st.BestMetric != nil) {
		bad("best_step", "%d: want 0…global_step, and set exactly when best_metric is", st.BestStep)
	}
}

// checkNumbers checks the real-valued fields and the hashes.
func (st State) checkNumbers(bad badFunc) {
	finite := func(x float64) bool { return !math.IsNaN(x) && !math.IsInf(x, 0) }
	if !finite(st.Epoch) || st.Epoch < 0 {
		bad("epoch", "%g is not a finite number ≥ 0", st.Epoch)
	}
	if !(st.Alpha >= 0 && st.Alpha <= 1) {
		bad("alpha", "%g is outside [0, 1]", st.Alpha)
	}
	if !finite(st.LearningRate) || st.LearningRate < 0 {
		bad("learning_rate", "%g is not a finite number ≥ 0", st.LearningRate)
	}
	if st.BestMetric != nil && !finite(*st.BestMetric) {
		bad("best_metric", "%g is not finite", *st.BestMetric)
	}
	if st.FrozenHash != "" && !isSHA256(st.FrozenHash) {
		bad("frozen_weights_sha256", "%q is not a SHA-256 in hex", st.FrozenHash)
	}
	if d := st.Data; d != nil && (d.Size < 0 || !isSHA256(d.SHA256) || (d.Method != hashWhole && d.Method != hashEnds)) {
		bad("data_fingerprint", "%+v is not a fingerprint of this build", *d)
	}
}

// checkData checks the data cursors and the loader's counters: the state's own, and each rank's when
// several ranks wrote it. A cursor is checked against this run's epoch only when this run has as many
// ranks as the checkpoint (the loader checks a resharded one).
func (st State) checkData(lim stateLimits, bad badFunc) {
	perEpoch := lim.perEpoch
	if max(1, st.WorldSize) != max(1, lim.world) {
		perEpoch = math.MaxInt
	}
	checkCursor("data_cursor", st.Cursor, perEpoch, bad)
	checkCounts("data_counts", st.Counts, bad)
	switch {
	case st.WorldSize < 0 || st.WorldSize == 1:
		bad("world_size", "%d: want 0 (one rank) or the number of ranks", st.WorldSize)
	case st.WorldSize > 1 && len(st.Ranks) != st.WorldSize:
		bad("ranks", "%d entries for world_size %d", len(st.Ranks), st.WorldSize)
	case st.WorldSize == 0 && len(st.Ranks) > 0:
		bad("ranks", "%d entries without world_size", len(st.Ranks))
	}
	for r, rs := range st.Ranks {
		checkCursor(fmt.Sprintf("ranks[%d].data_cursor", r), rs.Cursor, perEpoch, bad)
		checkCounts(fmt.Sprintf("ranks[%d].data_counts", r), rs.Counts, bad)
	}
}

// checkCursor reports a data cursor outside an epoch of perEpoch records.
func checkCursor(field string, c data.Cursor, perEpoch int, bad badFunc) {
	if c.Epoch < 0 || c.Position < 0 || c.Position > perEpoch {
		bad(field, "%+v is outside the data (%d records an epoch)", c, perEpoch)
	}
}

// checkCounts reports loader counters that are negative or contradict each other.
func checkCounts(field string, c data.Counts, bad badFunc) {
	for _, n := range []int{c.Records, c.Samples, c.WithImage, c.TextOnly, c.Truncated, c.Skipped} {
		if n < 0 {
			bad(field, "a negative count")
			return
		}
	}
	if c.Tokens < 0 || c.Samples > c.Records || c.Skipped > c.Records || c.WithImage+c.TextOnly != c.Samples {
		bad(field, "the counts contradict each other: %+v", c)
	}
	for reason, n := range c.Bad {
		if n < 0 || n > c.Records {
			bad(field, "bad[%q] = %d is outside 0…records", reason, n)
		}
	}
}

// badFunc records one bad field with its reason.
type badFunc func(field, format string, a ...any)

// isSHA256 reports whether s is 64 lower-case hex digits.
func isSHA256(s string) bool {
	b, err := hex.DecodeString(s)
	return err == nil && len(b) == 32 && hex.EncodeToString(b) == s
}
