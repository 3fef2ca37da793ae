package config

import (
	"bufio"
	"bytes"
	"fmt"
	"strconv"

	"github.com/flextrain/flextrain/internal/fileio"
	"github.com/flextrain/flextrain/model"
)

// memoryPlan is the memory a run's parameters take before any activation: every weight, and for each
// trainable one its gradient and AdamW's two moments (and the accumulated gradient when there is more than
// one micro-batch a step).
type memoryPlan struct {
	params, trainable int64 // elements
	bytes             int64
}

// planMemory adds up the memory plan of cfg's model in elements of elem bytes, from the shapes alone.
func (cfg Config) planMemory(elem int) memoryPlan {
	var p memoryPlan
	for name, shape := range model.Shapes(cfg.Model()) {
		n := int64(1)
		for _, d := range shape {
			n *= int64(d)
		}
		p.params += n
		if cfg.Trainable(name) {
			p.trainable += n
		}
	}
	copies := int64(3) // gradient, m, v
	if cfg.GradientAccumulationSteps > 1 {
		copies++
	}
	p.bytes = (p.params + copies*p.trainable) * int64(elem)
	return p
}

// CheckMemory refuses, before anything is allocated, a model whose parameters in elements of elem bytes
// alone need more memory than the machine has: a mistyped width would otherwise end in the runtime's fatal
// out-of-memory.
func (cfg Config) CheckMemory(elem int) error {
	total, ok := physicalMemory()
	if !ok {
		return nil
	}
	p := cfg.planMemory(elem)
	if p.bytes <= total {
		return nil
	}
	return fmt.Errorf("config: the model of %s needs %.1f GiB for its %d parameters (%d trainable, with their gradients and AdamW state) before any activation; this machine has %.1f GiB",
		cfg.DType, gib(p.bytes), p.params, p.trainable, gib(total))
}

func gib(b int64) float64 { return float64(b) / (1 << 30) }

// physicalMemory reads MemTotal from /proc/meminfo; false where there is none.
func physicalMemory() (int64, bool) {
	b, err := fileio.ReadFile("/proc/meminfo", 1<<20)
	if err != nil {
		return 0, false
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		var kb int64
		if rest, ok := bytes.CutPrefix(sc.Bytes(), []byte("MemTotal:")); ok {
			f := bytes.Fields(rest)
			if len(f) == 2 && string(f[1]) == "kB" {
				kb, err = strconv.ParseInt(string(f[0]), 10, 64)
				return kb << 10, err == nil
			}
		}
	}
	return 0, false
}
