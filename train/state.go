package train

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	"github.com/flextrain/flextrain/config"
	"github.com/flextrain/flextrain/dist"

	"github.com/flextrain/flextrain/checkpoints"
	"github.com/flextrain/flextrain/data"
	"github.com/flextrain/flextrain/optim"
	"github.com/flextrain/flextrain/safetensors"
)

// State is the trainer's part of a checkpoint (trainer_state.json): everything besides the weights and
// the optimizer moments that a resumed run needs to continue bit for bit.
type State struct {
	Step             int         `json:"global_step"`
	Epoch            float64     `json:"epoch"`
	Cursor           data.Cursor `json:"data_cursor"`
	Counts           data.Counts `json:"data_counts"`
	OptimizerStep    int         `json:"optimizer_step"` // AdamW's t, which skipped steps do not advance
	Alpha            float64     `json:"alpha"`
	LearningRate     float64     `json:"learning_rate"`
	SkippedNonFinite int         `json:"skipped_nonfinite"`
	NonFiniteInRow   int         `json:"nonfinite_in_row"`
	BestMetric       *float64    `json:"best_metric,omitempty"` // lowest eval loss so far
	BestStep         int         `json:"best_step,omitempty"`
	// Seed names the only randomness of a run: the data order is drawn from (seed, epoch) and the random
	// selection strategy from (seed, step, sample, layer), so there is no generator state to store.
	Seed int `json:"seed"`
	// FrozenHash is the SHA-256 of the frozen weights, so a resume against other base weights fails.
	FrozenHash string `json:"frozen_weights_sha256"`
	// Data identifies the content of data_path, so a resume notices a data file edited since (absent in
	// checkpoints of earlier builds).
	Data *DataFingerprint `json:"data_fingerprint,omitempty"`
	// WorldSize is the number of ranks that wrote the checkpoint, and Ranks their data positions, when
	// there were several (Cursor is then rank 0's and Counts the sum over ranks); absent for one.
	WorldSize int         `json:"world_size,omitempty"`
	Ranks     []RankState `json:"ranks,omitempty"`
}

// save commits a checkpoint of the current step and prunes old ones, keeping the one just written and
// the best. On several ranks every rank calls it: their data positions are gathered and their weights
// compared, rank 0 writes, and all learn whether that worked.
func (t *trainer[T]) save() error {
	if err := t.syncHost(); err != nil {
		return err
	}
	if t.state.FrozenHash == "" {
		t.state.FrozenHash = t.frozenHash()
	}
	t.state.Data = &t.data
	t.state.Cursor, t.state.Counts = t.train.Cursor(), t.train.Counts()
	t.state.OptimizerStep = t.opt.Step
	if t.multi() {
		if err := t.gatherRanks(); err != nil {
			return err
		}
	}
	var err error
	if t.lead() {
		err = t.write()
	}
	if err = t.agree(err, "save"); err == nil {
		t.saved = t.state.Step
	}
	return err
}

// write commits the checkpoint of the current state and prunes old ones.
func (t *trainer[T]) write() error {
	st, err := json.MarshalIndent(t.state, "", "  ")
	if err != nil {
		return fmt.Errorf("train: save step %d: trainer state: %w", t.state.Step, err)
	}
	cfgYAML, err := t.cfg.YAML()
	if err != nil {
		return err
	}
	ck := &checkpoints.Checkpoint{Step: t.state.Step, Weights: map[string]safetensors.Tensor{},
		Optimizer: map[string]safetensors.Tensor{}, State: st, Config: cfgYAML}
	for _, p := range t.params {
		ck.Weights[p.Name] = tensorOf(p.Shape, p.Value)
		if m, ok := t.opt.M[p.Name]; ok {
			ck.Optimizer["m."+p.Name], ck.Optimizer["v."+p.Name] = tensorOf(p.Shape, m), tensorOf(p.Shape, t.opt.V[p.Name])
		}
	}
	path, err := t.store().Save(ck)
	if err != nil {
		return fmt.Errorf("train: save step %d: %w", t.state.Step, err)
	}
	t.log.info("checkpoint saved", "path", path)
	protect := []int{t.state.Step}
	if t.state.BestMetric != nil {
		protect = append(protect, t.state.BestStep)
	}
	if _, err = t.store().Prune(t.cfg.SaveTotalLimit, protect...); err != nil {
		return fmt.Errorf("train: prune %s: %w", t.cfg.OutputDir, err)
	}
	return nil
}

// store is output_dir on the file system of the run (RunOptions.FS, the real one by default). Its limits
// are the run's own tensors: a checkpoint whose tensor files claim more than these can hold is refused
// before it costs memory.
func (t *trainer[T]) store() checkpoints.Store {
	weights, moments := map[string][]int{}, map[string][]int{}
	for _, p := range t.params {
		weights[p.Name], moments["m."+p.Name], moments["v."+p.Name] = p.Shape, p.Shape, p.Shape
	}
	elem := int(dtypeOf[T]().Size())
	return checkpoints.Store{Dir: t.cfg.OutputDir, FS: t.opts.FS, Limits: checkpoints.Limits{
		Weights: checkpoints.PayloadBound(weights, elem), Optimizer: checkpoints.PayloadBound(moments, elem)}}
}

// tensorOf wraps a parameter's values as a safetensors tensor of its own element type.
func tensorOf[T optim.Float](shape []int, v []T) safetensors.Tensor {
	switch x := any(v).(type) {
	case []float32:
		return safetensors.FromFloat32(shape, x)
	case []float64:
		return safetensors.FromFloat64(shape, x)
	}
	return safetensors.Tensor{}
}

// frozenHash is the SHA-256 over the names and bytes of every frozen weight, in name order.
func (t *trainer[T]) frozenHash() string {
	h := sha256.New()
	for _, name := range t.weights.Names() {
		if t.cfg.Trainable(name) {
			continue
		}
		ts := t.weights.Tensor(name) // one at a time, widened: the same hash whatever precision keeps it
		fmt.Fprintf(h, "%s %v %s\n", name, ts.Shape, ts.DType)
		h.Write(ts.Data)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// resume restores weights, optimizer, data position and counters from the checkpoint --resume names. It
// trusts nothing the checksums let through: the state's every field, each tensor's shape and the data
// file are checked against the run before anything is restored.
func (t *trainer[T]) resume() error {
	spec, err := resumeSpec(t.opts)
	if err != nil {
		return err
	}
	path, err := t.resolve(spec)
	if path == "" || err != nil {
		return err
	}
	ck, err := t.store().Load(path)
	if err != nil {
		return fmt.Errorf("train: resume: %w", err)
	}
	if err := t.checkDrift(path, ck.Config); err != nil {
		return err
	}
	if err := t.restoreState(path, ck); err != nil {
		return err
	}
	if err := t.restoreTensors(path, ck); err != nil {
		return err
	}
	cursor, counts, err := t.rankPosition(t.state, path)
	if err != nil {
		return err
	}
	if err := t.train.Restore(cursor); err != nil {
		return fmt.Errorf("train: resume %s: %w", path, err)
	}
	t.train.RestoreCounts(counts)
	t.resumed, t.saved = path, t.state.Step
	t.log.info("resumed", "checkpoint", path, "step", t.state.Step)
	return nil
}

// resolve turns the --resume value into the checkpoint to load ("" to start fresh). Rank 0 decides, logging
// why it skipped damaged checkpoints, and tells the other ranks.
func (t *trainer[T]) resolve(spec string) (string, error) {
	var path string
	var err error
	if t.lead() {
		var warnings []string
		path, warnings, err = t.store().Resolve(spec)
		for _, w := range warnings {
			t.log.warn(w)
		}
		if errors.Is(err, checkpoints.ErrNotFound) && spec == "auto" {
			path, err = "", nil
		}
		if err != nil {
			err = fmt.Errorf("train: resume %s: %w", spec, err)
		}
	}
	if !t.multi() {
		return path, err
	}
	all, gerr := dist.Gather(t.comm, []byte(path))
	if gerr != nil {
		return "", fmt.Errorf("train: resume: %w", gerr)
	}
	return string(all[0]), err
}

// restoreState decodes and checks the checkpoint's trainer_state.json, then the frozen weights and the
// data file against it.
func (t *trainer[T]) restoreState(path string, ck *checkpoints.Checkpoint) error {
	st, err := decodeState(ck.State, stateLimits{step: ck.Step, seed: t.cfg.Seed,
		perEpoch: t.train.StepsPerEpoch() * t.cfg.PerDeviceTrainBatchSize, world: t.comm.Size()})
	if err != nil {
		return fmt.Errorf("train: resume %s: %w", filepath.Join(path, "trainer_state.json"), err)
	}
	if h := t.frozenHash(); st.FrozenHash != "" && h != st.FrozenHash {
		return fmt.Errorf("train: resume %s: %w: the frozen base weights differ from those the checkpoint was trained on", path, checkpoints.ErrConfigMismatch)
	}
	if err := t.checkData(path, st.Data); err != nil {
		return err
	}
	t.state = st
	return nil
}

// checkDrift refuses a resume whose configuration changed a key that defines the run, and warns about
// allowed changes.
func (t *trainer[T]) checkDrift(path string, saved []byte) error {
	prev, err := config.Parse(saved, path+"/config.yaml")
	if err != nil {
		return fmt.Errorf("train: resume: %w", err)
	}
	cur := t.cfg
	cur.SamePaths(prev) // the same data reached by another path (an earlier build's relative one) is no change
	shape, allowed := config.Diff(prev, cur)
	if len(shape) > 0 {
		return fmt.Errorf("train: resume %s: %w: these keys changed: %s", path, checkpoints.ErrConfigMismatch, strings.Join(shape, ", "))
	}
	if len(allowed) > 0 {
		t.log.warn("resuming with changed settings", "keys", strings.Join(allowed, ", "))
	}
	return nil
}

// restoreTensors copies the checkpoint's weights and AdamW moments into the run.
func (t *trainer[T]) restoreTensors(path string, ck *checkpoints.Checkpoint) error {
	t.opt.Step = t.state.OptimizerStep
	if t.opt.Step > 0 {
		t.opt.M, t.opt.V = map[string][]T{}, map[string][]T{}
	}
	for _, p := range t.params {
		if err := copyTensor(p.Value, p.Shape, ck.Weights, p.Name); err != nil {
			return fmt.Errorf("train: resume %s: %w", path, err)
		}
		if t.opt.Step == 0 {
			continue
		}
		m, v := make([]T, len(p.Value)), make([]T, len(p.Value))
		if err := errors.Join(copyTensor(m, p.Shape, ck.Optimizer, "m."+p.Name), copyTensor(v, p.Shape, ck.Optimizer, "v."+p.Name)); err != nil {
			return fmt.Errorf("train: resume %s: %w", path, err)
		}
		t.opt.M[p.Name], t.opt.V[p.Name] = m, v
	}
	return nil
}

// copyTensor fills dst, a tensor of shape, from the named tensor, which must have that shape and the type
// of dst: a tensor stored with its dimensions swapped has the right number of values and the wrong
// meaning.
func copyTensor[T optim.Float](dst []T, shape []int, ts map[string]safetensors.Tensor, name string) error {
	st, ok := ts[name]
	if !ok {
		return fmt.Errorf("%w: tensor %s is missing", checkpoints.ErrConfigMismatch, name)
	}
	if !slices.Equal(st.Shape, shape) {
		return fmt.Errorf("%w: tensor %s has shape %v, the model's is %v", checkpoints.ErrConfigMismatch, name, st.Shape, shape)
	}
	var src []T
	switch any(dst).(type) {
	case []float32:
		v, err := st.Float32s()
		if err != nil || st.DType != safetensors.DType("F32") {
			return fmt.Errorf("%w: tensor %s is %s, want F32", checkpoints.ErrConfigMismatch, name, st.DType)
		}
		src = any(v).([]T)
	case []float64:
		v, err := st.Float64s()
		if err != nil || st.DType != safetensors.DType("F64") {
			return fmt.Errorf("%w: tensor %s is %s, want F64", checkpoints.ErrConfigMismatch, name, st.DType)
		}
		src = any(v).([]T)
	}
	if len(src) != len(dst) {
		return fmt.Errorf("%w: tensor %s has %d values, want %d", checkpoints.ErrConfigMismatch, name, len(src), len(dst))
	}
	copy(dst, src)
	return nil
}
