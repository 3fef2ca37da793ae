package optim_test

import (
	"fmt"

	"github.com/flextrain/flextrain/optim"
)

// One optimizer step: clip, schedule, update. At t = 1 AdamW moves each weight by about lr·sign(g).
func Example() {
	w := optim.Param[float32]{Name: "lm_head.weight", Shape: []int{1, 2}, Value: []float32{1, 1}, Grad: []float32{3, -4}}
	params := []optim.Param[float32]{w}
	norm, _ := optim.ClipGradNorm(params, 1.0)
	lr, _ := optim.LR("cosine", 1e-2, 0, 0, 100)
	opt := optim.NewAdamW[float32](0.9, 0.999, 1e-8, 0)
	_ = opt.Update(params, lr)
	fmt.Printf("norm %.1f lr %g step %d w %.2f\n", norm, lr, opt.Step, w.Value)
	// Output: norm 5.0 lr 0.01 step 1 w [0.99 1.01]
}
