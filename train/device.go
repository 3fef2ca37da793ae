package train

import (
	"errors"
	"fmt"

	"gorgonia.org/tensor"

	"github.com/flextrain/flextrain/config"
	"github.com/flextrain/flextrain/dist"
	"github.com/flextrain/flextrain/gpu"
	"github.com/flextrain/flextrain/model"
	"github.com/flextrain/flextrain/optim"
)

// accelerator is a GPU that runs a run's steps (package gpu, in a build with -tags gpu): every graph
// (model.Device), then the step's gradient and AdamW over the trainable weights, which stay in its memory.
// The host's weights and moments are brought up to date by Sync before anything reads them: a checkpoint,
// an evaluation.
type accelerator interface {
	model.Device
	// Accumulate takes a graph's gradients: alone as the step's, or tokens·gradient into the step's sums.
	Accumulate(grads map[string]*tensor.Dense, tokens int, alone bool) error
	// Update ends the step: the sums' token-weighted mean (unless alone), clipped to maxNorm, then AdamW with
	// lr. It returns the norm before clipping; one not finite changes nothing (optim.ErrNonFinite).
	Update(o *optim.AdamW[float32], lr, maxNorm float64, tokens int, alone bool) (float64, error)
	// Discard forgets the step's sums (a skipped step).
	Discard()
	// Reduce sums the step's gradient sums over the ranks with sum, an in-place all-reduce of one flat
	// buffer in parameter order (optim.Accumulator.Reduce); tokens is the ranks' supervised tokens together.
	// A rank whose micro-batches supervised nothing contributes zeros.
	Reduce(tokens int, sum func([]float32) error) error
	// Memory is the GPU's memory in bytes.
	Memory() (int64, error)
	// Usage is the GPU's work so far: the most memory the run's buffers held at once, and the operations of
	// its matrix products.
	Usage() gpu.Usage
	// Sync copies the trainable weights into the host's params and the moments into o.
	Sync(o *optim.AdamW[float32]) error
	Close() error
}

// deviceGroup is an accelerator whose GPUs can sum among themselves (NCCL, in package gpu): once every rank
// has joined one group, Reduce keeps the gradient sums on the GPUs and leaves its sum argument unused.
type deviceGroup interface {
	// CanGroup says why this GPU cannot join a group (no NCCL here), or nil.
	CanGroup() error
	// GroupID makes the identity of a new group: one rank makes it for all.
	GroupID() ([]byte, error)
	// JoinGroup makes this GPU the rank-th of size in the group id; every rank of the group calls it.
	JoinGroup(id []byte, rank, size int) error
}

// CheckDevice refuses, before anything is read or allocated, a config whose device this build cannot run:
// cuda in a build without the gpu tag (gpu.ErrNoCUDA, naming the GPU that the process of local rank
// localRank would take).
func CheckDevice(cfg config.Config, localRank int) error {
	d, err := deviceOf(cfg, localRank)
	if err != nil || !d.CUDA || cudaBuilt {
		return err
	}
	return fmt.Errorf("train: device cuda:%d: %w", d.Ordinal, gpu.ErrNoCUDA)
}

// checkDevice is CheckDevice for this rank, unless the run opens its devices itself (RunOptions.openDevice:
// tests' stand-ins).
func (t *trainer[T]) checkDevice() error {
	if t.opts.openDevice != nil {
		return nil
	}
	return CheckDevice(t.cfg, t.comm.LocalRank())
}

// deviceOf is cfg's device for the process of local rank localRank: cuda without an ordinal is the GPU of
// that rank on its machine.
func deviceOf(cfg config.Config, localRank int) (config.Device, error) {
	d, err := config.ParseDevice(cfg.Device)
	if cfg.Device == "cuda" {
		d.Ordinal = localRank
	}
	return d, err
}

// openDevice starts the run's GPU when the config names one: its steps then run there (t.graph.Device).
func (t *trainer[T]) openDevice() error {
	d, err := deviceOf(t.cfg, t.comm.LocalRank())
	if err != nil || !d.CUDA {
		return err // validated: never an error here
	}
	params, ok := any(t.params).([]optim.Param[float32])
	if !ok {
		return fmt.Errorf("train: device %s trains in float32", t.cfg.Device)
	}
	open := openAccelerator
	if t.opts.openDevice != nil {
		open = t.opts.openDevice
	}
	name := fmt.Sprintf("cuda:%d", d.Ordinal)
	if t.dev, err = open(d, t.cfg.LLaVA.TF32, params); err != nil {
		return fmt.Errorf("train: device %s: %w", name, err)
	}
	total, err := t.dev.Memory()
	if err == nil {
		err = t.cfg.CheckDeviceMemory(name, total)
	}
	if err != nil { // refused before a weight goes up
		t.dev.Close()
		t.dev = nil
		return fmt.Errorf("train: device %s: %w", name, err)
	}
	t.graph.Device = t.dev
	return nil
}

// joinDevices lets the ranks' GPUs sum the gradients among themselves (deviceGroup) when every rank can:
// every rank joins the group whose identity rank 0 made. When a rank cannot (no NCCL there), all sum through
// the comm over the host, and the log says which rank and why. Every rank calls it, after setup agreed, in
// a build with GPUs and several ranks.
func (t *trainer[T]) joinDevices() error {
	g, ok := t.dev.(deviceGroup)
	if !ok || !t.multi() {
		return nil
	}
	rank, why, err := t.cannotGroup(g)
	if err != nil || why != "" {
		if why != "" {
			t.log.printf("gradient sums go through the host: rank %d: %s\n", rank, why)
		}
		return err
	}
	id, err := t.sharedGroupID(g)
	if err == nil {
		err = g.JoinGroup(id, t.comm.Rank(), t.comm.Size())
	}
	if err != nil {
		return fmt.Errorf("train: device %s: a group of the ranks' GPUs: %w", t.cfg.Device, err)
	}
	t.log.printf("gradient sums stay on the GPUs: a group of %d\n", t.comm.Size())
	return nil
}

// cannotGroup gathers why each rank's GPU cannot join a group, and returns the first rank that cannot with
// its reason, or "" when all can.
func (t *trainer[T]) cannotGroup(g deviceGroup) (int, string, error) {
	mine := ""
	if why := g.CanGroup(); why != nil {
		mine = why.Error()
	}
	reasons, err := dist.Gather(t.comm, []byte(mine))
	for r, why := range reasons {
		if len(why) > 0 {
			return r, string(why), err
		}
	}
	return 0, "", err
}

// sharedGroupID is, on every rank, the identity of the group rank 0 makes; every rank fails when rank 0
// could not make one.
func (t *trainer[T]) sharedGroupID(g deviceGroup) ([]byte, error) {
	var id []byte
	var err error
	if t.comm.Rank() == 0 {
		id, err = g.GroupID()
		if err != nil {
			id = nil // the others see an empty identity
		}
	}
	ids, gerr := dist.Gather(t.comm, id)
	switch {
	case err != nil:
		return nil, err
	case gerr != nil:
		return nil, gerr
	case len(ids[0]) == 0:
		return nil, errors.New("rank 0 could not make one")
	}
	return ids[0], nil
}

// syncHost brings the host's weights and optimizer state up to date with the GPU's (a no-op on the CPU).
func (t *trainer[T]) syncHost() error {
	if t.dev == nil {
		return nil
	}
	if err := t.dev.Sync(any(t.opt).(*optim.AdamW[float32])); err != nil {
		return fmt.Errorf("train: device %s: copy the weights back: %w", t.cfg.Device, err)
	}
	return nil
}
