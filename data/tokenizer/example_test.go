package tokenizer_test

import (
	"fmt"

	"github.com/flextrain/flextrain/data/tokenizer"
)

func Example() {
	tok, err := tokenizer.Load("../testdata/tokenizer/llama/tokenizer.json.gz")
	if err != nil {
		fmt.Println(err)
		return
	}
	ids := tok.Encode("What is this?", true)
	fmt.Println(ids)
	fmt.Printf("%q\n", tok.Decode(ids[1:]))
	fmt.Println(tok.Encode("ok</s>", false)) // a literal special token is one id
	// Output:
	// [1 1724 338 445 29973]
	// "What is this?"
	// [3431 2]
}
