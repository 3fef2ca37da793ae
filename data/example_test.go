package data_test

import (
	"context"
	"fmt"
	"image"
	"image/png"
	"os"
	"path/filepath"

	"github.com/flextrain/flextrain/data"
)

// Example writes a three-record dataset (one record's image is missing), reads one epoch in file order,
// and prints the batches, the cursor and the counters a checkpoint would keep.
func Example() {
	dir, _ := os.MkdirTemp("", "flextrain-data-example")
	defer os.RemoveAll(dir)
	img, _ := os.Create(filepath.Join(dir, "cat.png"))
	png.Encode(img, image.NewRGBA(image.Rect(0, 0, 30, 20)))
	img.Close()
	os.WriteFile(filepath.Join(dir, "data.json"), []byte(`[
 {"id": "a", "image": "cat.png", "conversations": [{"from": "human", "value": "<image>\nWhat is it?"}, {"from": "gpt", "value": "A cat."}]},
 {"id": "b", "image": "dog.png", "conversations": [{"from": "human", "value": "<image>\nAnd this?"}, {"from": "gpt", "value": "A dog."}]},
 {"id": "c", "conversations": [{"from": "human", "value": "Say hi."}, {"from": "gpt", "value": "Hi!"}]}]`), 0o644)

	l, err := data.Open(data.Options{DataPath: filepath.Join(dir, "data.json"), ImageFolder: dir,
		TokenizerPath: "testdata/tokenizer/llama/tokenizer.json.gz", ImageSize: 16, Zoom: 2, PatchSize: 8,
		ModelMaxLength: 256, BatchSize: 2})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer l.Close()
	for range l.StepsPerEpoch() {
		b, err := l.Next(context.Background())
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Println(b.IDs, b.OriSizes, len(b.HRPixels[0]), l.Cursor())
	}
	c := l.Counts()
	fmt.Println(c.Samples, c.WithImage, c.TextOnly, c.Skipped, c.Bad)
	// Output:
	// [a] [[30 20]] 3072 {0 2}
	// [c] [[0 0]] 0 {1 0}
	// 2 1 1 1 map[missing:1]
}
