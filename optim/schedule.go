package optim

import (
	"errors"
	"fmt"
	"math"
)

// Schedules are the learning-rate schedule names LR accepts, spelled as HF's `lr_scheduler_type`.
var Schedules = []string{"constant", "constant_with_warmup", "linear", "cosine"}

// ErrSchedule reports an unknown schedule name or arguments outside its domain.
var ErrSchedule = errors.New("optim: bad learning-rate schedule")

// LR returns the learning rate for the update that follows `step` optimizer steps (0 for the first update),
// as Hugging Face's schedulers compute it (transformers/optimization.py), base·factor with:
//
//	constant              1 (no warm-up, as HF's get_constant_schedule)
//	constant_with_warmup  step/warmup during warm-up, then 1
//	linear                step/warmup during warm-up, then (total−step)/(total−warmup)
//	cosine                step/warmup during warm-up, then ½(1 + cos(π·p)), p = (step−warmup)/(total−warmup)
//
// where each division by a count uses max(1, count) as HF does. step must lie in 0…total: past the end HF's
// cosine would rise again, which no run should ask for.
func LR(kind string, base float64, step, warmup, total int) (float64, error) {
	if step < 0 || warmup < 0 || total < 1 || step > total {
		return 0, fmt.Errorf("%w: step %d, warmup %d, total %d (need 0 ≤ step ≤ total, warmup ≥ 0, total ≥ 1)",
			ErrSchedule, step, warmup, total)
	}
	if kind == "constant" {
		return base, nil
	}
	if step < warmup {
		return base * (float64(step) / float64(max(1, warmup))), nil
	}
	progress := float64(step-warmup) / float64(max(1, total-warmup))
	switch kind {
	case "constant_with_warmup":
		return base, nil
	case "linear":
		return base * max(0, float64(total-step)/float64(max(1, total-warmup))), nil
	case "cosine": // HF get_cosine_schedule_with_warmup with num_cycles = 0.5
		return base * max(0, 0.5*(1+math.Cos(math.Pi*0.5*2*progress))), nil
	}
	return 0, fmt.Errorf("%w: unknown lr_scheduler_type %q (want one of %v)", ErrSchedule, kind, Schedules)
}

// WarmupSteps is HF's TrainingArguments.get_warmup_steps: warmupSteps when positive, otherwise
// ceil(total·ratio). Float rounding is kept as HF has it: ratio 0.07 of 100 steps gives 8, since
// 100·0.07 = 7.000000000000001 in float64 as in Python.
func WarmupSteps(ratio float64, warmupSteps, total int) int {
	if warmupSteps > 0 {
		return warmupSteps
	}
	return int(math.Ceil(float64(total) * ratio))
}
