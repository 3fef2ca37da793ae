package synth_test

import (
	"fmt"
	"os"

	"github.com/flextrain/flextrain/data/synth"
)

func ExampleParseURI() {
	opts, err := synth.ParseURI("synth://n=500,seed=3,hr=96,text=0.2")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(opts.N, opts.ValN, opts.Seed, opts.HRSize, opts.HRSize/opts.Zoom, opts.TextFrac)

	_, err = synth.ParseURI("synth://n=500,size=96")
	fmt.Println(err)
	// Output:
	// 500 200 3 96 32 0.2
	// synth: malformed synth:// URI: unknown key "size" (known: asks, center, clutter, dir, hr, min_aspect, n, others, seed, signs, small, snap, test, text, val, zoom)
}

func ExampleGenerate() {
	dir, err := os.MkdirTemp("", "synth-example-")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.RemoveAll(dir)
	opts := synth.DefaultOptions()
	opts.Dir, opts.N, opts.ValN, opts.TestN = dir, 20, 10, 10
	m, err := synth.Generate(opts)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(m.Counts["train"], m.Counts["train.small"], m.Counts["train.large"], m.Counts["train.text"], m.Counts["images"])
	again, _ := synth.Generate(opts)
	fmt.Println("reused:", again.Reused)
	// Output:
	// 20 9 9 2 36
	// reused: true
}
