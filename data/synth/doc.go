// Package synth generates flextrain's built-in demo dataset: LLaVA-format records, PNG images and a small
// WordLevel tokenizer.json, all from a seed, so that `flextrain fit` can train and evaluate without
// downloading anything.
//
// Each image is as large as the model's HR view (its long side is Z·S, so the loader's pad-to-square leaves
// it unscaled) and often not square, so the padding margin that selection zeroes is real. On a cluttered
// background (a gradient, grain, outlines, lines, stray grey characters) lie a few objects: large filled
// shapes and signs, each of its own colour (the question's target and up to Options.Others more shapes and
// as many more signs; others=0 leaves the target alone). Questions come in three kinds, written in each
// record's "kind":
//
//   - "large": the colour or shape of a large shape, or the single character on a large sign; all readable
//     in the LR view (the image shrunk Z times);
//   - "small": the character or three-letter word on a small sign, drawn Z times smaller than a large sign,
//     so about 3 LR pixels high at Z = 3 (unreadable) but 9 HR pixels (readable): the questions that HR
//     features, and so FlexAttention's selection, should help with;
//   - "text": arithmetic and colour facts with no image, as LLaVA's mix keeps text-only samples.
//
// Two options help a vision tower trained from scratch: snap puts every sign's text on the patch grid, so a
// large glyph lies in an LR patch as a small one lies in an HR patch, and asks adds follow-up questions to
// training records (several answers per image instead of one). Both are off by default.
//
// Answers are single words of the tokenizer's vocabulary, scored by exact match. Image records carry the
// target's bounding box ("box", original pixels), which the LLaVA loader ignores and evaluation can use.
//
// Example:
//
//	opts, err := synth.ParseURI("synth://n=2000,seed=1,hr=192")
//	if err != nil {
//		return err
//	}
//	opts.Dir = "runs/demo/data"
//	m, err := synth.Generate(opts) // reuses runs/demo/data when synth.json matches
//	if err != nil {
//		return err
//	}
//	// m.Train, m.ImageFolder and m.Tokenizer go into the loader's options.
//
// Generate is not safe to run twice at once on one folder (it removes the images of an earlier dataset
// before writing): in a multi-process run, let one process generate and the others wait for synth.json.
package synth
