// Command tinydata writes testdata/tiny, the small synthetic dataset that configs/tiny.yaml trains on and the
// train and cmd/flextrain tests use: 96 training and 24 validation samples of 96-pixel images (S = 32, Z = 3).
//
//	go run ./internal/tinydata testdata/tiny
//
// The same options give the same files, so regenerating after a change to data/synth shows up in git diff.
package main

import (
	"fmt"
	"os"

	"github.com/flextrain/flextrain/data/synth"
)

// Options are the tiny dataset's: small enough to commit (well under 1.5 MB), big enough that a 2×2 batch
// schedule has several epochs to learn from.
func Options(dir string) synth.Options {
	o := synth.DefaultOptions()
	o.Dir, o.Workers = dir, 1
	o.N, o.ValN, o.TestN = 96, 24, 0
	o.Seed, o.HRSize, o.Zoom = 7, 96, 3
	o.Clutter = 4 // fewer distractors: the tiny model should visibly learn within a few hundred steps
	return o
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: go run ./internal/tinydata DIR")
		os.Exit(2)
	}
	m, err := synth.Generate(Options(os.Args[1]))
	if err != nil {
		fmt.Fprintln(os.Stderr, "tinydata:", err)
		os.Exit(1)
	}
	fmt.Printf("tinydata: %d train, %d val samples, %d images in %s (reused: %v)\n",
		m.Counts["train"], m.Counts["val"], m.Counts["images"], os.Args[1], m.Reused)
}
