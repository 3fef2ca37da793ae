package train

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"

	"github.com/flextrain/flextrain/data"
	"github.com/flextrain/flextrain/dist"
	"github.com/flextrain/flextrain/eval"
)

// The trainer on several ranks (dist.Comm): every rank reads its shard of each epoch, takes the same
// optimizer step from the gradient of all ranks' batches, and so keeps the same weights; rank 0 logs and
// writes. Every function here is collective: each rank calls it at the same point of the run.

// RankState is one rank's part of a checkpoint of a run on several ranks: its data cursor and counters.
type RankState struct {
	Cursor data.Cursor `json:"data_cursor"`
	Counts data.Counts `json:"data_counts"`
}

// multi reports whether the run has more than one rank.
func (t *trainer[T]) multi() bool { return t.comm.Size() > 1 }

// lead reports whether this rank logs and writes (rank 0).
func (t *trainer[T]) lead() bool { return t.comm.Rank() == 0 }

// agree returns err on the rank it happened on and an error saying so on every other rank: after a step
// that only some ranks can fail (a file, a save), all of them stop together instead of waiting on the
// ones that stopped.
func (t *trainer[T]) agree(err error, what string) error {
	if !t.multi() {
		return err
	}
	failed, cerr := dist.Any(t.comm, err != nil)
	switch {
	case cerr != nil:
		return fmt.Errorf("train: %s: %w", what, cerr)
	case err != nil:
		return err
	case failed:
		return fmt.Errorf("train: %s failed on another rank", what)
	}
	return nil
}

// allReduce sums the step's loss, its supervised tokens, its sizes and the accumulated gradient sums over
// the ranks, so that each rank finishes with the token-weighted mean over every rank's micro-batches; it
// also tells each rank whether some rank's step failed (stepErr), and then all return an error: a
// stepFailure from the data position at, which every rank knows of, so that all save the last finished
// step together.
func (t *trainer[T]) allReduce(lossSum float64, tokens int, stepErr error, res *stepResult, at *dataPosition) (float64, int, error) {
	stats := []float64{lossSum, float64(tokens), float64(res.tokens), float64(res.samples), 0}
	if stepErr != nil {
		stats[4] = 1
	}
	if err := t.comm.SumFloat64(stats); err != nil {
		return 0, 0, fmt.Errorf("train: step %d: all-reduce: %w", t.state.Step+1, err)
	}
	if stepErr != nil {
		return 0, 0, stepErr
	}
	if stats[4] > 0 {
		return 0, 0, &stepFailure{err: fmt.Errorf("train: step %d failed on another rank", t.state.Step+1), at: at}
	}
	res.tokens, res.samples = int(stats[2]), int(stats[3])
	reduce := func() error { return t.acc.Reduce(t.params, int(stats[1]), sumOf[T](t.comm)) }
	if t.dev != nil { // the sums come down, meet the other ranks' through the comm, and go back up
		reduce = func() error { return t.dev.Reduce(int(stats[1]), sumOf[float32](t.comm)) }
	}
	if err := reduce(); err != nil {
		return 0, 0, fmt.Errorf("train: step %d: all-reduce the gradient: %w", t.state.Step+1, err)
	}
	return stats[0], int(stats[1]), nil
}

// sumOf is the comm's in-place sum for values of type T.
func sumOf[T any](c dist.Comm) func([]T) error {
	var z T
	if _, ok := any(z).(float64); ok {
		return func(x []T) error { return c.SumFloat64(any(x).([]float64)) }
	}
	return func(x []T) error { return c.SumFloat32(any(x).([]float32)) }
}

// stopTogether reports on every rank whether some rank was signalled: the ranks stop after the same step.
func (t *trainer[T]) stopTogether(signalled bool) (bool, error) {
	if !t.multi() {
		return signalled, nil
	}
	return dist.Any(t.comm, signalled)
}

// gatherRanks puts every rank's data cursor and counters into the state (rank 0's also as the state's own,
// with the counters summed over ranks), and checks that the ranks' weights are still identical.
func (t *trainer[T]) gatherRanks() error {
	mine, _ := json.Marshal(RankState{Cursor: t.train.Cursor(), Counts: t.train.Counts()}) // plain values always marshal
	all, err := dist.Gather(t.comm, mine)
	if err != nil {
		return fmt.Errorf("train: save step %d: gather the ranks' data positions: %w", t.state.Step, err)
	}
	t.state.WorldSize, t.state.Ranks = len(all), make([]RankState, len(all))
	for r, b := range all {
		if err := json.Unmarshal(b, &t.state.Ranks[r]); err != nil {
			return fmt.Errorf("train: save step %d: rank %d's data position: %w", t.state.Step, r, err)
		}
	}
	t.state.Cursor, t.state.Counts = t.state.Ranks[0].Cursor, sumCounts(t.state.Ranks)
	return t.checkSameWeights()
}

// sumCounts adds up the ranks' counters.
func sumCounts(ranks []RankState) data.Counts {
	var c data.Counts
	c.Bad = map[string]int{}
	for _, r := range ranks {
		n := r.Counts
		c.Records, c.Samples, c.WithImage, c.TextOnly = c.Records+n.Records, c.Samples+n.Samples, c.WithImage+n.WithImage, c.TextOnly+n.TextOnly
		c.Tokens, c.Truncated, c.Skipped = c.Tokens+n.Tokens, c.Truncated+n.Truncated, c.Skipped+n.Skipped
		for k, v := range n.Bad {
			c.Bad[k] += v
		}
	}
	return c
}

// ErrDiverged is returned when the ranks' trainable weights are no longer identical, which the same
// gradient and the same optimizer step should keep them: a broken reduction, or a rank on other inputs.
var ErrDiverged = fmt.Errorf("train: the ranks' weights diverged")

// checkSameWeights compares a SHA-256 of every rank's trainable weights with rank 0's.
func (t *trainer[T]) checkSameWeights() error {
	h := sha256.New()
	for _, p := range t.params {
		binary.Write(h, binary.LittleEndian, p.Value) // a hash takes every byte
	}
	all, err := dist.Gather(t.comm, h.Sum(nil))
	if err != nil {
		return fmt.Errorf("train: step %d: gather the weights' fingerprints: %w", t.state.Step, err)
	}
	for r, sum := range all {
		if string(sum) != string(all[0]) {
			return fmt.Errorf("%w at step %d: rank %d's differ from rank 0's", ErrDiverged, t.state.Step, r)
		}
	}
	return nil
}

// reduceReport combines the ranks' evaluations of their shares of the held-out data.
func (t *trainer[T]) reduceReport(r eval.Report, kinds map[string]string) (eval.Report, error) {
	if !t.multi() {
		return r, nil
	}
	return r.Reduce(eval.KindsOf(kinds), t.comm.SumFloat64)
}

// rankPosition is the data cursor and counters this rank resumes from: the state's own on one rank, this
// rank's on as many ranks as the checkpoint had, and with --reshard on another number of ranks, the
// epoch's global position shared out again (a few records of the epoch may then be read twice or not at
// all), its counters on rank 0.
func (t *trainer[T]) rankPosition(st State, path string) (data.Cursor, data.Counts, error) {
	world, size := max(1, st.WorldSize), t.comm.Size()
	switch {
	case world == size && world == 1:
		return st.Cursor, st.Counts, nil
	case world == size:
		r := st.Ranks[t.comm.Rank()]
		return r.Cursor, r.Counts, nil
	case !t.opts.Reshard:
		return data.Cursor{}, data.Counts{}, fmt.Errorf("train: resume %s: the checkpoint was written by %d ranks, this run has %d: resume with %d ranks, or pass --reshard to restart the epoch's order from the global sample count", path, world, size, world)
	}
	c := st.Cursor
	batch := t.cfg.PerDeviceTrainBatchSize
	c.Position = min(c.Position*world/size/batch*batch, t.train.StepsPerEpoch()*batch)
	counts := data.Counts{}
	if t.lead() {
		counts = st.Counts
	}
	return c, counts, nil
}
