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
)

// stateLimits is what a checkpoint's trainer_state.json is checked against: the checkpoint's own step (its
// directory name and MANIFEST), the run's seed, and the records per epoch of this rank's data (the most a
// data cursor can have consumed of an epoch).
type stateLimits struct {
	step, seed, perEpoch int
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

// checkData checks the data cursor and the loader's counters.
func (st State) checkData(lim stateLimits, bad badFunc) {
	if c := st.Cursor; c.Epoch < 0 || c.Position < 0 || c.Position > lim.perEpoch {
		bad("data_cursor", "%+v is outside the data (%d records an epoch)", c, lim.perEpoch)
	}
	c := st.Counts
	for _, n := range []int{c.Records, c.Samples, c.WithImage, c.TextOnly, c.Truncated, c.Skipped} {
		if n < 0 {
			bad("data_counts", "a negative count")
			return
		}
	}
	if c.Tokens < 0 || c.Samples > c.Records || c.Skipped > c.Records || c.WithImage+c.TextOnly != c.Samples {
		bad("data_counts", "the counts contradict each other: %+v", c)
	}
	for reason, n := range c.Bad {
		if n < 0 || n > c.Records {
			bad("data_counts", "bad[%q] = %d is outside 0…records", reason, n)
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
