// Package llava holds the two special values of LLaVA's token sequences, which the data loader writes and
// the model reads: IgnoreIndex in labels and ImageTokenID in input ids. They live here, once, because the
// loader and the model do not import each other.
package llava

const (
	// IgnoreIndex marks a label that the loss skips: an unsupervised position, or padding (LLaVA's and
	// PyTorch's IGNORE_INDEX).
	IgnoreIndex = -100
	// ImageTokenID stands for the image in input ids (LLaVA's IMAGE_TOKEN_INDEX); the model puts the
	// image's patch embeddings at its position.
	ImageTokenID = -200
)
