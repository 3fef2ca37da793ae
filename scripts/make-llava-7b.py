#!/usr/bin/env python3
"""make-llava-7b.py writes a folder shaped exactly like liuhaotian/llava-v1.5-7b, in float16, with random values:
the memory test of `flextrain predict` on a 7B model (scripts/measure-7b-memory.sh) runs on it, without a 14 GB
download.

  OUT/llava-v1.5-7b/                   config.json (LlavaLlamaForCausalLM, the mm_* keys), safetensors shards of about
                                       1 GiB of float16 tensors with model.safetensors.index.json: LLaMA-7B (32 layers of
                                       width 4096, MLP 11008, vocabulary 32000), the mlp2x_gelu projector and the
                                       CLIP ViT-L/14-336 tower inside, post_layernorm and position_ids included;
                                       the tiny test tokenizer (its ids are a subset of the vocabulary)
  OUT/clip-vit-large-patch14-336/      config.json only: the tower's shape, found as mm_vision_tower's sibling

Run with Debian's PyTorch (apt-get install -y python3-torch); it needs ~14 GB of disk and little memory, since each
tensor is drawn and written on its own:

    /usr/bin/python3 scripts/make-llava-7b.py OUT [--layers N]

--layers writes a shallower decoder (to try the script quickly). Values are N(0, 0.02²) from a seeded generator,
rounded to float16; norm weights are ones, biases zeros.
"""
import argparse
import json
import os
import shutil
import struct

import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = os.path.join(REPO, "testdata", "llava", "llava-v1.5-tiny")
TOWER = "model.vision_tower.vision_tower.vision_model."
V = dict(hidden=1024, inter=4096, layers=24, heads=16, image=336, patch=14)
T = dict(vocab=32000, hidden=4096, inter=11008, layers=32, heads=32)


def specs(layers):
    """(name, shape, kind, dtype) of every tensor, in the published order: kind is randn, ones, zeros or arange."""
    out = []

    def lin(p, o, i, bias):
        out.append((p + ".weight", (o, i), "randn", torch.float16))
        if bias:
            out.append((p + ".bias", (o,), "zeros", torch.float16))

    def norm(p, d, bias):
        out.append((p + ".weight", (d,), "ones", torch.float16))
        if bias:
            out.append((p + ".bias", (d,), "zeros", torch.float16))

    d, f = T["hidden"], T["inter"]
    out.append(("model.embed_tokens.weight", (T["vocab"], d), "randn", torch.float16))
    for l in range(layers):
        p = "model.layers.%d." % l
        norm(p + "input_layernorm", d, False)
        for proj in ("q_proj", "k_proj", "v_proj", "o_proj"):
            lin(p + "self_attn." + proj, d, d, False)
        norm(p + "post_attention_layernorm", d, False)
        lin(p + "mlp.gate_proj", f, d, False)
        lin(p + "mlp.up_proj", f, d, False)
        lin(p + "mlp.down_proj", d, f, False)
    norm("model.norm", d, False)
    lin("lm_head", T["vocab"], d, False)
    lin("model.mm_projector.0", d, V["hidden"], True)
    lin("model.mm_projector.2", d, d, True)
    c, g = V["hidden"], V["image"] // V["patch"]
    out.append((TOWER + "embeddings.class_embedding", (c,), "randn", torch.float16))
    out.append((TOWER + "embeddings.patch_embedding.weight", (c, 3, V["patch"], V["patch"]), "randn", torch.float16))
    out.append((TOWER + "embeddings.position_embedding.weight", (g * g + 1, c), "randn", torch.float16))
    out.append((TOWER + "embeddings.position_ids", (1, g * g + 1), "arange", torch.int64))
    norm(TOWER + "pre_layrnorm", c, True)
    for l in range(V["layers"]):
        p = "%sencoder.layers.%d." % (TOWER, l)
        norm(p + "layer_norm1", c, True)
        for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
            lin(p + "self_attn." + proj, c, c, True)
        norm(p + "layer_norm2", c, True)
        lin(p + "mlp.fc1", V["inter"], c, True)
        lin(p + "mlp.fc2", c, V["inter"], True)
    norm(TOWER + "post_layernorm", c, True)
    return out


def draw(gen, shape, kind, dtype):
    n = 1
    for s in shape:
        n *= s
    if kind == "arange":
        return torch.arange(n, dtype=dtype).reshape(shape)
    if kind == "ones":
        return torch.ones(shape, dtype=dtype)
    if kind == "zeros":
        return torch.zeros(shape, dtype=dtype)
    return (torch.randn(shape, generator=gen) * 0.02).to(dtype)


DTYPES = {torch.float16: ("F16", 2), torch.int64: ("I64", 8)}


def write_shard(path, items, gen):
    """Writes one safetensors file, each tensor drawn just before its bytes are written."""
    header, offset = {}, 0
    for name, shape, _, dtype in items:
        st, size = DTYPES[dtype]
        n = size
        for s in shape:
            n *= s
        header[name] = {"dtype": st, "shape": list(shape), "data_offsets": [offset, offset + n]}
        offset += n
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path + ".tmp", "wb") as fh:
        fh.write(struct.pack("<Q", len(h)))
        fh.write(h)
        for name, shape, kind, dtype in items:
            fh.write(draw(gen, shape, kind, dtype).contiguous().numpy().tobytes())
    os.replace(path + ".tmp", path)
    return offset


def shard(items, limit=1 << 30):
    """Groups tensors into shards of about limit bytes each."""
    groups, cur, size = [], [], 0
    for it in items:
        n = DTYPES[it[3]][1]
        for s in it[1]:
            n *= s
        if cur and size + n > limit:
            groups.append(cur)
            cur, size = [], 0
        cur.append(it)
        size += n
    groups.append(cur)
    return groups


def config(layers):
    with open(os.path.join(TINY, "config.json")) as fh:
        c = json.load(fh)
    c.update({"_name_or_path": "./checkpoints/llava-v1.5-7b", "hidden_size": T["hidden"], "intermediate_size": T["inter"],
              "mm_hidden_size": V["hidden"], "mm_vision_tower": "openai/clip-vit-large-patch14-336",
              "num_attention_heads": T["heads"], "num_hidden_layers": layers, "num_key_value_heads": T["heads"],
              "vocab_size": T["vocab"]})
    return c


def clip_config():
    vision = {"hidden_size": V["hidden"], "image_size": V["image"], "intermediate_size": V["inter"],
              "num_attention_heads": V["heads"], "num_hidden_layers": V["layers"], "patch_size": V["patch"],
              "projection_dim": 768, "model_type": "clip_vision_model", "hidden_act": "quick_gelu", "layer_norm_eps": 1e-05}
    return {"architectures": ["CLIPModel"], "model_type": "clip", "projection_dim": 768, "torch_dtype": "float32",
            "vision_config": vision}


def write_json(path, obj):
    with open(path, "w") as fh:
        json.dump(obj, fh, indent=2, sort_keys=True)
        fh.write("\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--layers", type=int, default=T["layers"])
    a = ap.parse_args()
    llava, clip = os.path.join(a.out, "llava-v1.5-7b"), os.path.join(a.out, "clip-vit-large-patch14-336")
    os.makedirs(llava, exist_ok=True)
    os.makedirs(clip, exist_ok=True)
    write_json(os.path.join(clip, "config.json"), clip_config())
    gen = torch.Generator().manual_seed(7)
    groups = shard(specs(a.layers))
    weight_map, total = {}, 0
    for i, g in enumerate(groups):
        name = "model-%05d-of-%05d.safetensors" % (i + 1, len(groups))
        total += write_shard(os.path.join(llava, name), g, gen)
        weight_map.update({t[0]: name for t in g})
        print("wrote", name, flush=True)
    write_json(os.path.join(llava, "model.safetensors.index.json"), {"metadata": {"total_size": total}, "weight_map": weight_map})
    for f in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json"):
        shutil.copy(os.path.join(TINY, f), os.path.join(llava, f))
    write_json(os.path.join(llava, "config.json"), config(a.layers))  # last: the folder is complete once it exists
    print("%s: %d tensors, %.2f GB" % (llava, len(weight_map), total / 1e9))


if __name__ == "__main__":
    main()
