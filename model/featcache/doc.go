// Package featcache caches the frozen CLIP vision tower's features so that fine-tuning runs the tower
// once per image, not once per image per epoch. The tower (and everything before the projector) is
// frozen, so an image's features are a function of its preprocessed pixels and of the vision weights
// and settings alone: the pixels give the Key (PixelKey), the weights and settings the cache's
// fingerprint (Fingerprint), and each image has two values, its LR features [n, Cv] (ViewLR) and its
// Z² HR crop features [Z²·n, Cv] (ViewHR), in the model's dtype. Other frozen values derived from an
// input (the model keeps the whole frozen front of the decoder this way) take a KeyOf their inputs and
// their own view names.
//
// Values live in an LRU in memory bounded by Options.MaxMemoryBytes and, with Options.Dir, in one
// zstd file each under Dir/<fingerprint>/<key[:2]>/<key>-<view>.<f32|f64>.zst, which a later run
// (a second epoch in a new process, a resumed run) reads back. A damaged file is a miss and is
// removed; it can never yield wrong features. A file is read only if it is a regular file (a FIFO or a
// link to a device is a miss, never waited on) and no larger than a file of the size asked for can be.
//
// Wiring into the model, generic in the element type T:
//
//	key := featcache.PixelKey(lrPixels, hrPixels)
//	lr, err := featcache.GetOrCompute(cache, key, featcache.ViewLR, n*Cv, func() []T { return tower(lrPixels) })
//	if err != nil {
//		log.Printf("feature cache: %v", err) // the features are right; only the disk write failed
//	}
//
// A nil *Cache is a disabled cache, so the model needs no second code path.
package featcache
