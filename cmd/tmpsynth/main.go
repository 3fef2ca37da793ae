package main

import (
	"fmt"
	"os"

	"github.com/flextrain/flextrain/data/synth"
)

func main() {
	o := synth.DefaultOptions()
	o.Dir = os.Args[1]
	o.N, o.ValN, o.TestN = 64, 16, 16
	m, err := synth.Generate(o)
	fmt.Printf("%+v %v\n", m, err)
}
