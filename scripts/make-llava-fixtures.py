#!/usr/bin/env python3
"""make-llava-fixtures.py regenerates testdata/llava/, the tiny published-layout folders that package pretrained
reads in its tests:

  testdata/llava/clip-vit-tiny/          CLIPModel (openai/clip-vit-large-patch14-336's layout): config.json with a
                                         text tower too, model.safetensors (float32)
  testdata/llava/llava-v1.5-tiny/        liuhaotian/llava-v1.5-7b's layout (LlavaLlamaForCausalLM), safetensors shards
                                         + model.safetensors.index.json (float16), the CLIP tower inside
  testdata/llava/llava-v1.5-tiny-bin/    the same weights as PyTorch shards (torch.save) + pytorch_model.bin.index.json
  testdata/llava/llava-1.5-tiny-hf/      llava-hf/llava-1.5-7b-hf's layout (LlavaForConditionalGeneration): renamed
                                         tensors, the vocabulary padded from 144 to 192 with <image> (144) and <pad> (145)

Run from anywhere with Debian's PyTorch (apt-get install -y python3-torch):

    /usr/bin/python3 scripts/make-llava-fixtures.py

CI never runs it; its outputs are committed. Every value comes from a seeded torch.Generator and is rounded to
float16 first, so the float32 CLIP tower equals the float16 towers of the LLaVA folders exactly. The safetensors
files are written by hand (8-byte header length, JSON header padded to 8 bytes, data) so that the script needs no
safetensors package. The tokenizer is testdata/tiny/tokenizer.json (WordLevel, 139 tokens); the model's
vocabulary is 144, as in the repository's other tiny models.
"""
import copy
import json
import os
import struct

import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(REPO, "testdata", "llava")

# The tiny model: vision 32² pixels in 8² patches (a 4×4 grid) of width 12, text 3 layers of width 16.
V = dict(hidden=12, inter=24, layers=2, heads=2, image=32, patch=8, proj=8)
T = dict(vocab=144, hidden=16, inter=24, layers=3, heads=2)
CLIP_TEXT = dict(vocab=64, hidden=8, inter=16, layers=1, heads=2, positions=8)
HF_VOCAB = 192  # 144 + <image> + <pad>, padded to a multiple of 64
TOWER = "model.vision_tower.vision_tower.vision_model."

gen = torch.Generator().manual_seed(20240601)


def draw(*shape, scale=0.05, offset=0.0):
    """Seeded values, rounded to float16 and returned as float32."""
    x = torch.randn(*shape, generator=gen) * scale + offset
    return x.half().float()


def linear(prefix, out, inp, bias):
    t = {prefix + ".weight": draw(out, inp)}
    if bias:
        t[prefix + ".bias"] = draw(out)
    return t


def norm(prefix, dim, bias):
    t = {prefix + ".weight": draw(dim, offset=1.0)}
    if bias:
        t[prefix + ".bias"] = draw(dim)
    return t


def clip_layers(prefix, hidden, inter, layers):
    t = {}
    for i in range(layers):
        p = "%sencoder.layers.%d." % (prefix, i)
        t.update(norm(p + "layer_norm1", hidden, True))
        for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
            t.update(linear(p + "self_attn." + proj, hidden, hidden, True))
        t.update(norm(p + "layer_norm2", hidden, True))
        t.update(linear(p + "mlp.fc1", inter, hidden, True))
        t.update(linear(p + "mlp.fc2", hidden, inter, True))
    return t


def vision_tower():
    """CLIPVisionModel's tensors under vision_model., with post_layernorm and the position_ids buffer."""
    p, c, g = "vision_model.", V["hidden"], V["image"] // V["patch"]
    t = {p + "embeddings.class_embedding": draw(c),
         p + "embeddings.patch_embedding.weight": draw(c, 3, V["patch"], V["patch"]),
         p + "embeddings.position_embedding.weight": draw(g * g + 1, c),
         p + "embeddings.position_ids": torch.arange(g * g + 1, dtype=torch.int64).unsqueeze(0)}
    t.update(norm(p + "pre_layrnorm", c, True))
    t.update(clip_layers(p, c, V["inter"], V["layers"]))
    t.update(norm(p + "post_layernorm", c, True))
    return t


def clip_text():
    p, c = "text_model.", CLIP_TEXT["hidden"]
    t = {p + "embeddings.token_embedding.weight": draw(CLIP_TEXT["vocab"], c),
         p + "embeddings.position_embedding.weight": draw(CLIP_TEXT["positions"], c),
         p + "embeddings.position_ids": torch.arange(CLIP_TEXT["positions"], dtype=torch.int64).unsqueeze(0)}
    t.update(clip_layers(p, c, CLIP_TEXT["inter"], CLIP_TEXT["layers"]))
    t.update(norm(p + "final_layer_norm", c, True))
    return t


def decoder():
    """LlavaLlamaForCausalLM's decoder, projector and head, with the inv_freq buffers old checkpoints kept."""
    d, f = T["hidden"], T["inter"]
    t = {"model.embed_tokens.weight": draw(T["vocab"], d)}
    dh = d // T["heads"]
    inv_freq = 1.0 / (10000 ** (torch.arange(0, dh, 2).float() / dh))
    for l in range(T["layers"]):
        p = "model.layers.%d." % l
        t.update(norm(p + "input_layernorm", d, False))
        for proj in ("q_proj", "k_proj", "v_proj", "o_proj"):
            t.update(linear(p + "self_attn." + proj, d, d, False))
        t[p + "self_attn.rotary_emb.inv_freq"] = inv_freq.clone()
        t.update(norm(p + "post_attention_layernorm", d, False))
        t.update(linear(p + "mlp.gate_proj", f, d, False))
        t.update(linear(p + "mlp.up_proj", f, d, False))
        t.update(linear(p + "mlp.down_proj", d, f, False))
    t.update(norm("model.norm", d, False))
    t.update(linear("lm_head", T["vocab"], d, False))
    t.update(linear("model.mm_projector.0", d, V["hidden"], True))
    t.update(linear("model.mm_projector.2", d, d, True))
    return t


DTYPES = {torch.float32: "F32", torch.float16: "F16", torch.int64: "I64"}


def write_safetensors(path, tensors):
    header, blobs, off = {}, [], 0
    for name in sorted(tensors):
        t = tensors[name].contiguous()
        b = t.numpy().tobytes()
        header[name] = {"dtype": DTYPES[t.dtype], "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    header["__metadata__"] = {"format": "pt"}
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as fh:
        fh.write(struct.pack("<Q", len(h)))
        fh.write(h)
        for b in blobs:
            fh.write(b)


def write_json(path, obj):
    with open(path, "w") as fh:
        json.dump(obj, fh, indent=2, sort_keys=True)
        fh.write("\n")


def write_shards(folder, tensors, first, name_fmt, index_name, save):
    """Two shards: the names for which first(name) holds, then the rest; and the index."""
    os.makedirs(folder, exist_ok=True)
    parts = [{k: v for k, v in tensors.items() if first(k)}, {k: v for k, v in tensors.items() if not first(k)}]
    weight_map, total = {}, 0
    for i, part in enumerate(parts):
        shard = name_fmt % (i + 1)
        save(os.path.join(folder, shard), {k: v.clone() for k, v in part.items()})
        for k, v in part.items():
            weight_map[k] = shard
            total += v.numel() * v.element_size()
    write_json(os.path.join(folder, index_name), {"metadata": {"total_size": total}, "weight_map": weight_map})


def fp16(tensors):
    return {k: (v.half() if v.is_floating_point() and not k.endswith("inv_freq") else v) for k, v in tensors.items()}


def tokenizer_files(folder, hf):
    with open(os.path.join(REPO, "testdata", "tiny", "tokenizer.json")) as fh:
        tok = json.load(fh)
    special = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<unk>"}
    cfg = {"add_bos_token": True, "add_eos_token": False, "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>",
           "pad_token": None, "model_max_length": 2048, "tokenizer_class": "PreTrainedTokenizerFast",
           "clean_up_tokenization_spaces": False}
    if hf:
        added = {"<image>": T["vocab"], "<pad>": T["vocab"] + 1}
        for content, i in added.items():
            tok["added_tokens"].append({"id": i, "content": content, "single_word": False, "lstrip": False,
                                        "rstrip": False, "normalized": False, "special": True})
        write_json(os.path.join(folder, "added_tokens.json"), added)
        special["pad_token"] = cfg["pad_token"] = "<pad>"
        cfg["added_tokens_decoder"] = {str(a["id"]): {k: a[k] for k in a if k != "id"} for a in tok["added_tokens"]}
    with open(os.path.join(folder, "tokenizer.json"), "w") as fh:
        json.dump(tok, fh, indent=2, ensure_ascii=False)
        fh.write("\n")
    write_json(os.path.join(folder, "tokenizer_config.json"), cfg)
    write_json(os.path.join(folder, "special_tokens_map.json"), special)


def llava_config():
    return {"_name_or_path": "./checkpoints/llava-v1.5-tiny", "architectures": ["LlavaLlamaForCausalLM"],
            "bos_token_id": 1, "eos_token_id": 2, "freeze_mm_mlp_adapter": False, "hidden_act": "silu",
            "hidden_size": T["hidden"], "image_aspect_ratio": "pad", "initializer_range": 0.02,
            "intermediate_size": T["inter"], "max_position_embeddings": 4096, "mm_hidden_size": V["hidden"],
            "mm_projector_type": "mlp2x_gelu", "mm_use_im_patch_token": False, "mm_use_im_start_end": False,
            "mm_vision_select_feature": "patch", "mm_vision_select_layer": -2, "mm_vision_tower": "openai/clip-vit-tiny",
            "model_type": "llava", "num_attention_heads": T["heads"], "num_hidden_layers": T["layers"],
            "num_key_value_heads": T["heads"], "pad_token_id": 0, "pretraining_tp": 1, "rms_norm_eps": 1e-05,
            "rope_scaling": None, "tie_word_embeddings": False, "torch_dtype": "float16",
            "transformers_version": "4.31.0", "tune_mm_mlp_adapter": False, "use_cache": True, "use_mm_proj": True,
            "vocab_size": T["vocab"]}


def clip_config():
    vision = {"hidden_size": V["hidden"], "image_size": V["image"], "intermediate_size": V["inter"],
              "num_attention_heads": V["heads"], "num_hidden_layers": V["layers"], "patch_size": V["patch"],
              "projection_dim": V["proj"]}
    text = {"hidden_size": CLIP_TEXT["hidden"], "intermediate_size": CLIP_TEXT["inter"],
            "num_attention_heads": CLIP_TEXT["heads"], "num_hidden_layers": CLIP_TEXT["layers"],
            "max_position_embeddings": CLIP_TEXT["positions"], "vocab_size": CLIP_TEXT["vocab"], "projection_dim": V["proj"]}
    # vision_config_dict overrides vision_config, as in the older CLIP files; this vision_config keeps a stale
    # image_size, so that a reader that skips the overlay fails.
    stale = dict(vision, image_size=224, model_type="clip_vision_model", hidden_act="quick_gelu", layer_norm_eps=1e-05)
    return {"architectures": ["CLIPModel"], "initializer_factor": 1.0, "logit_scale_init_value": 2.6592,
            "model_type": "clip", "projection_dim": V["proj"], "torch_dtype": "float32", "transformers_version": "4.21.3",
            "text_config": dict(text, model_type="clip_text_model"), "text_config_dict": text,
            "vision_config": stale, "vision_config_dict": vision}


def hf_config():
    text = {"_name_or_path": "lmsys/vicuna-tiny", "architectures": ["LlamaForCausalLM"], "hidden_size": T["hidden"],
            "intermediate_size": T["inter"], "num_attention_heads": T["heads"], "num_hidden_layers": T["layers"],
            "max_position_embeddings": 4096, "model_type": "llama", "rms_norm_eps": 1e-05, "torch_dtype": "float16",
            "vocab_size": HF_VOCAB}
    vision = {"hidden_size": V["hidden"], "image_size": V["image"], "intermediate_size": V["inter"],
              "model_type": "clip_vision_model", "num_attention_heads": V["heads"], "num_hidden_layers": V["layers"],
              "patch_size": V["patch"], "projection_dim": V["proj"], "vocab_size": 32000}
    return {"architectures": ["LlavaForConditionalGeneration"], "ignore_index": -100, "image_token_index": T["vocab"],
            "model_type": "llava", "pad_token_id": T["vocab"] + 1, "projector_hidden_act": "gelu", "text_config": text,
            "tie_word_embeddings": False, "torch_dtype": "float16", "transformers_version": "4.36.0.dev0",
            "vision_config": vision, "vision_feature_layer": -2, "vision_feature_select_strategy": "default",
            "vocab_size": HF_VOCAB}


HF_RENAMES = [("model.vision_tower.vision_tower.", "vision_tower."), ("model.mm_projector.0.", "multi_modal_projector.linear_1."),
              ("model.mm_projector.2.", "multi_modal_projector.linear_2."), ("model.", "language_model.model."),
              ("lm_head.", "language_model.lm_head.")]


def hf_tensors(llava):
    """llava-hf's tensors: renamed, without inv_freq and position_ids, the vocabulary padded with drawn rows."""
    out = {}
    for k, v in llava.items():
        if k.endswith("inv_freq") or k.endswith("position_ids"):
            continue
        for a, b in HF_RENAMES:
            if k.startswith(a):
                k = b + k[len(a):]
                break
        out[k] = v
    for k in ("language_model.model.embed_tokens.weight", "language_model.lm_head.weight"):
        out[k] = torch.cat([out[k], draw(HF_VOCAB - T["vocab"], T["hidden"]).to(out[k].dtype)])
    return out


def main():
    tower, text, dec = vision_tower(), clip_text(), decoder()
    clip = dict(tower, **text)
    clip["visual_projection.weight"] = draw(V["proj"], V["hidden"])
    clip["text_projection.weight"] = draw(V["proj"], CLIP_TEXT["hidden"])
    clip["logit_scale"] = torch.tensor(2.6592)
    folder = os.path.join(OUT, "clip-vit-tiny")
    os.makedirs(folder, exist_ok=True)
    write_safetensors(os.path.join(folder, "model.safetensors"), clip)
    write_json(os.path.join(folder, "config.json"), clip_config())

    llava = dict(dec, **{TOWER + k[len("vision_model."):]: v for k, v in tower.items()})
    llava = fp16(llava)
    first = lambda k: k.startswith("model.embed_tokens.") or k.startswith("model.layers.0.") or k.startswith("model.layers.1.")
    for name, save, fmt, index in [
            ("llava-v1.5-tiny", write_safetensors, "model-%05d-of-00002.safetensors", "model.safetensors.index.json"),
            ("llava-v1.5-tiny-bin", lambda path, t: torch.save(t, path), "pytorch_model-%05d-of-00002.bin", "pytorch_model.bin.index.json")]:
        folder = os.path.join(OUT, name)
        write_shards(folder, llava, first, fmt, index, save)
        write_json(os.path.join(folder, "config.json"), llava_config())
        write_json(os.path.join(folder, "generation_config.json"),
                   {"_from_model_config": True, "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0})
        tokenizer_files(folder, hf=False)

    folder = os.path.join(OUT, "llava-1.5-tiny-hf")
    hf = hf_tensors(llava)
    write_shards(folder, hf, lambda k: k.startswith("language_model."), "model-%05d-of-00002.safetensors",
                 "model.safetensors.index.json", write_safetensors)
    write_json(os.path.join(folder, "config.json"), hf_config())
    write_json(os.path.join(folder, "generation_config.json"),
               {"bos_token_id": 1, "eos_token_id": 2, "pad_token_id": T["vocab"] + 1})
    tokenizer_files(folder, hf=True)


if __name__ == "__main__":
    main()
