#!/usr/bin/env python3
"""make-torch-fixtures.py regenerates the torch.save fixtures that package torchfile's tests read:

  torchfile/testdata/dtypes.bin        an OrderedDict state_dict (with its _metadata) of one tensor of each
                                       element type flextrain reads (float32, float16, bfloat16, float64,
                                       int64, int32, uint8, bool), a 0-d scalar and an empty tensor
  torchfile/testdata/views.bin         views: a slice with a storage offset, two tensors sharing one storage,
                                       a tensor saved under two names, rows of a matrix, an expanded int64
                                       buffer like CLIP's position_ids, and an nn.Parameter
  torchfile/testdata/proto4.bin        a plain dict saved with pickle protocol 4 (FRAME, STACK_GLOBAL, MEMOIZE)
  torchfile/testdata/noncontig.bin     a transposed (non-contiguous) tensor, which torchfile refuses
  torchfile/testdata/legacy.bin        the legacy (pre-1.6, non-ZIP) format, which torchfile refuses (it keys
                                       storages by memory address, so it differs on every run; the others
                                       come out byte for byte the same)
  torchfile/testdata/sharded/          pytorch_model-0000k-of-00002.bin and pytorch_model.bin.index.json, as
                                       transformers' save_pretrained writes a two-shard checkpoint
  torchfile/testdata/expected.json     every tensor's dtype (as safetensors spells it), shape and values

Every value comes from value(k, i) below, and expected.json is written from the Python values, never from
flextrain. The files are tiny (a few KB each) and committed: CI has no torch and never runs this script.

Regenerate (Debian's PyTorch is enough; the fixtures were made with python3-torch 1.13.1):

  apt-get install -y python3-torch
  /usr/bin/python3 scripts/make-torch-fixtures.py
"""
import collections
import json
import os

import torch

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "torchfile", "testdata")

DTYPES = {
    torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.float64: "F64",
    torch.int64: "I64", torch.int32: "I32", torch.uint8: "U8", torch.bool: "BOOL",
}


def value(k, i):
    """The i-th element of the k-th tensor: a multiple of 1/4 in [-2.75, 2.75], exact in every float type."""
    return ((7 * i + 3 * k) % 23 - 11) / 4


def floats(k, shape, dtype):
    n = 1
    for d in shape:
        n *= d
    return torch.tensor([value(k, i) for i in range(n)], dtype=torch.float64).reshape(shape).to(dtype)


def dtypes_dict():
    sd = collections.OrderedDict()
    sd["f32"] = floats(1, (2, 3), torch.float32)
    sd["f16"] = floats(2, (4,), torch.float16)
    sd["bf16"] = floats(3, (2, 2), torch.bfloat16)
    sd["f64"] = floats(4, (3,), torch.float64)
    sd["i64"] = torch.tensor([0, -1, 2**40 + 3, -(2**62) - 5, 2**62 + 7], dtype=torch.int64)
    sd["i32"] = torch.tensor([7, -2**31, 2**31 - 1], dtype=torch.int32)
    sd["u8"] = torch.tensor([0, 1, 128, 255], dtype=torch.uint8)
    sd["bool"] = torch.tensor([True, False, True])
    sd["scalar"] = torch.tensor(3.25, dtype=torch.float32)
    sd["empty"] = torch.zeros((0, 4), dtype=torch.float32)
    sd._metadata = collections.OrderedDict([("", {"version": 1})])
    return sd


def views_dict():
    base = floats(5, (10,), torch.float16)
    matrix = floats(6, (4, 3), torch.float32)
    tied = floats(7, (2, 2), torch.bfloat16)
    sd = collections.OrderedDict()
    sd["slice"] = base[3:7]  # storage offset 3 into a 10-element storage
    sd["whole"] = base  # shares the slice's storage
    sd["rows"] = matrix[1:3]  # offset 3, shape (2, 3)
    sd["embed.weight"] = tied
    sd["lm_head.weight"] = tied  # the same tensor under two names
    sd["position_ids"] = torch.arange(5, dtype=torch.int64).expand((1, -1))  # stride (0, 1)
    sd["param"] = torch.nn.Parameter(floats(8, (3,), torch.float32))
    return sd


def shard_dicts():
    first = collections.OrderedDict()
    first["model.embed_tokens.weight"] = floats(9, (4, 2), torch.float16)
    first["model.layers.0.mlp.weight"] = floats(10, (2, 2), torch.float16)
    second = collections.OrderedDict()
    second["lm_head.weight"] = floats(11, (4, 2), torch.float16)
    second["model.vision_tower.embeddings.position_ids"] = torch.arange(3, dtype=torch.int64).expand((1, -1))
    return [first, second]


def describe(t):
    t = t.detach()
    if t.dtype == torch.bfloat16:
        vals = t.to(torch.float64).flatten().tolist()
    else:
        vals = t.flatten().tolist()
    if t.dtype == torch.bool:
        vals = [int(v) for v in vals]
    return {"dtype": DTYPES[t.dtype], "shape": list(t.shape), "values": vals}


def save(name, obj, **kw):
    path = os.path.join(OUT, name)
    torch.save(obj, path, **kw)
    return path


def write_shards(expected):
    folder = os.path.join(OUT, "sharded")
    os.makedirs(folder, exist_ok=True)
    weight_map, total, tensors = {}, 0, {}
    for k, sd in enumerate(shard_dicts(), start=1):
        shard = "pytorch_model-%05d-of-00002.bin" % k
        torch.save(sd, os.path.join(folder, shard))
        for name, t in sd.items():
            weight_map[name] = shard
            total += t.numel() * t.element_size()
            tensors[name] = describe(t)
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    with open(os.path.join(folder, "pytorch_model.bin.index.json"), "w") as f:
        f.write(json.dumps(index, indent=2, sort_keys=True) + "\n")  # as transformers writes it
    expected["sharded/pytorch_model.bin.index.json"] = tensors


def main():
    os.makedirs(OUT, exist_ok=True)
    expected = {}
    for name, sd, kw in [
        ("dtypes.bin", dtypes_dict(), {}),
        ("views.bin", views_dict(), {}),
        ("proto4.bin", dict(dtypes_dict()), {"pickle_protocol": 4}),
    ]:
        save(name, sd, **kw)
        expected[name] = {k: describe(v) for k, v in sd.items()}
    save("noncontig.bin", {"transposed": floats(12, (2, 3), torch.float32).t()})
    save("legacy.bin", dtypes_dict(), _use_new_zipfile_serialization=False)
    write_shards(expected)
    with open(os.path.join(OUT, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1, sort_keys=True)
        f.write("\n")


if __name__ == "__main__":
    main()
