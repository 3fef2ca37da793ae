package featcache_test

import (
	"fmt"
	"os"

	"github.com/flextrain/flextrain/model/featcache"
)

// The model keys an image by its pixels, and runs the frozen tower only on a miss. From the second
// epoch on, every image's features come from the cache.
func Example() {
	dir, _ := os.MkdirTemp("", "featcache")
	defer os.RemoveAll(dir)
	fp := featcache.Fingerprint([]byte(`{"select_layer":-2,"zoom":2}`), []byte("vision weights"))
	c, err := featcache.New(featcache.Options{Dir: dir, Fingerprint: fp, MaxMemoryBytes: 1 << 30})
	if err != nil {
		fmt.Println(err)
		return
	}
	lr, hr := make([]float32, 3*4*4), make([]float32, 3*8*8) // preprocessed pixels of one image
	key := featcache.PixelKey(lr, hr)
	tower := func() []float32 { fmt.Println("tower runs"); return make([]float32, 4*8) }
	for epoch := range 2 {
		f, err := featcache.GetOrCompute(c, key, featcache.ViewLR, 4*8, tower)
		fmt.Println("epoch", epoch, len(f), err)
	}
	s := c.Stats()
	fmt.Printf("hits %d, misses %d, hit rate %.2f\n", s.Hits, s.Misses, s.HitRate())
	// Output:
	// tower runs
	// epoch 0 32 <nil>
	// epoch 1 32 <nil>
	// hits 1, misses 1, hit rate 0.50
}
