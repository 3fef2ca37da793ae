// Package data turns a LLaVA instruction file and its image folder into training batches for the
// FlexAttention model: records (a streamed JSON array or JSON Lines), the conversation template and
// tokenizer (template.go, data/tokenizer), images (pad to square with the CLIP mean colour, bicubic resize
// to the HR side Z·S, CLIP normalisation, antialiased bilinear LR view), and the Loader that batches them.
//
// The Loader is deterministic: the order of an epoch depends only on (Seed, epoch), the rank and the world
// size; decoding runs in a pool of workers whose timing never changes the result. Its Cursor and Counts are
// JSON values that a checkpoint stores, so a resumed run continues with exactly the next batch. A batch
// is a window of BatchSize records of the rank's order less its bad samples (missing or broken images,
// images past Options.ImageMaxPixels, paths leaving the image folder, records past Options.MaxRecordBytes,
// over-long or malformed conversations), which are skipped and counted, or stop the run, as Options.Policy
// says. Inputs are opened as regular files only (internal/fileio), so a FIFO or a device cannot hang a run.
//
// Typical use from train/:
//
//	l, err := data.Open(data.Options{DataPath: "llava_v1_5_mix665k.json", ImageFolder: "images",
//		TokenizerPath: "tokenizer.json", ImageSize: 336, Zoom: 3, PatchSize: 14, ModelMaxLength: 2048,
//		BatchSize: 16, Seed: 3407, Shuffle: true, Logger: slog.Default()})
//	if err != nil { … }
//	defer l.Close()
//	_ = l.Restore(saved.Cursor) // when resuming
//	for step := range steps {
//		b, err := l.Next(ctx)
//		… train on b …
//		state.Cursor, state.Counts = l.Cursor(), l.Counts() // into the checkpoint
//	}
package data
