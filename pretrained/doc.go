// Package pretrained reads the published LLaVA-1.5 folders as they are, and writes a model back in their
// layouts, so that flextrain starts from, and hands back to, the checkpoints that other tools read.
//
// Four layouts are read (Open), told apart by their config.json:
//
//   - LayoutLLaVA: the original LLaVA-1.5 release (liuhaotian/llava-v1.5-7b, LlavaLlamaForCausalLM): LLaMA's
//     flat keys plus the mm_* keys, tensors already under flextrain's names (docs/DESIGN.md §2), the CLIP tower
//     inside the shards or in the CLIP folder that mm_vision_tower names.
//   - LayoutExport: flextrain's own export, the LLaVA layout plus its `flex` block and the k/v_proj_hd tensors.
//   - LayoutLLaVAHF: the transformers port (llava-hf/llava-1.5-7b-hf, LlavaForConditionalGeneration):
//     text_config and vision_config, renamed tensors, a vocabulary padded to a multiple of 64.
//   - LayoutCLIP: a CLIP folder (openai/clip-vit-large-patch14-336, CLIPModel or CLIPVisionModel): a vision
//     tower only, which supplies the tower of a LLaVA folder that lacks one.
//
// Keys missing from a config.json take the defaults of the class that reads them (transformers' LlamaConfig,
// CLIPVisionConfig and LlavaConfig; LLaVA's own loader for the mm_* keys). A key that changes the model in a
// way flextrain does not compute (grouped-query attention, tied embeddings, another projector, image start
// and end tokens, …) is an error naming the file, the key and the reason; keys that change nothing flextrain
// computes are ignored.
//
// Write is the other way: the llava layout (what LLaVA's load_pretrained_model loads, with FlexAttention's
// keys and tensors added) or the llava-hf layout, in float32, float16 or bfloat16, sharded, with the
// tokenizer files, every file written atomically and config.json last; WriteOptions.Plain leaves
// FlexAttention out (a base LLaVA converted to another layout or dtype).
package pretrained
