#!/usr/bin/env python3
"""ref-7b.py DIR: adds to a copy of the PyTorch reference implementation (DIR/bench.py, DIR/flexref.py)
what the 7B comparison asks of it, in place:

  --size 7b   LLaVA-1.5-7B's shapes (CLIP ViT-L/14-336, zoom 3, select grid 9; the LLaMA-7B decoder, n_sa 9)
              with configs/bench-7b.yaml's trainable set: the attention projections of the FlexAttention
              layers (with k/v_proj_hd), which fit one 80 GB GPU in float32 with AdamW;
  --llava-set with --size 7b, LLaVA-1.5's own trainable set instead (every layer from n_sa on, with the
              final norm and lm_head: the reference's default), which needs an H200;
  --bf16      the forward pass under torch.autocast(bfloat16); weights, gradients and AdamW stay float32
              (flexref's LR and HR feature tables then take the projector's dtype).

Each edit replaces an exact line and stops with an error naming it when the file has changed.
scripts/gpu-check.sh build runs it on the copy it carries to a GPU machine.
"""
import os
import sys

FLEXREF = [
    ("    lr = torch.zeros(B, n, D, dtype=lr_px.dtype).index_put((idx,), projector(W, f))",
     "    p = projector(W, f)\n"
     "    lr = torch.zeros(B, n, D, dtype=p.dtype).index_put((idx,), p)"),
    ("            hd = torch.zeros(B, M, D, dtype=hr_px.dtype).index_put((idx,), f)",
     "            hd = torch.zeros(B, M, D, dtype=f.dtype).index_put((idx,), f)"),
]

BENCH = [
    ("SIZES = {'bench': bench_config, 'gpu': gpu_config}",
     "def llava7b_config(strategy='attention'):\n"
     "    c = gpu_config(strategy)\n"
     "    c['text'].update(vocab_size=32000, hidden_size=4096, intermediate_size=11008, num_layers=32, num_heads=32)\n"
     "    c['flex'].update(n_sa=9)\n"
     "    return c\n\n\n"
     "SIZES = {'bench': bench_config, 'gpu': gpu_config, '7b': llava7b_config}\n"
     "ATTENTION_ONLY = False   # --size 7b: only the FlexAttention layers' attention projections train"),
    ("def trainable(name, n_sa):\n",
     "def trainable(name, n_sa):\n"
     "    if ATTENTION_ONLY:\n"
     "        return name.startswith('model.layers.') and int(name.split('.')[2]) >= n_sa and '.self_attn.' in name\n"),
    ("def child(a):\n",
     "def child(a):\n"
     "    global ATTENTION_ONLY\n"
     "    ATTENTION_ONLY = a.size == '7b' and not a.llava_set\n"),
    ("        out = fr.forward(W, cfg, inp, 'train', 1.0, impl, view, a.strategy, a.ratio, step=i)",
     "        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=a.bf16):\n"
     "            out = fr.forward(W, cfg, inp, 'train', 1.0, impl, view, a.strategy, a.ratio, step=i)"),
    ("    ap.add_argument('--tf32', action='store_true', help='let float32 matmuls use TF32 on a GPU')",
     "    ap.add_argument('--tf32', action='store_true', help='let float32 matmuls use TF32 on a GPU')\n"
     "    ap.add_argument('--bf16', action='store_true', help='the forward pass under bfloat16 autocast')\n"
     "    ap.add_argument('--llava-set', action='store_true', help='--size 7b: LLaVA-1.5\\'s trainable set')"),
    ("(['--tf32'] if a.tf32 else [])",
     "(['--tf32'] if a.tf32 else []) + (['--bf16'] if a.bf16 else []) + (['--llava-set'] if a.llava_set else [])"),
]


def patch(path, edits):
    text = open(path).read()
    for old, new in edits:
        if text.count(old) != 1:
            sys.exit(f"ref-7b.py: {path}: expected one line {old.splitlines()[0]!r}, found {text.count(old)}")
        text = text.replace(old, new)
    os.chmod(path, 0o644)
    open(path, 'w').write(text)


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: ref-7b.py DIR")
    patch(os.path.join(sys.argv[1], 'bench.py'), BENCH)
    patch(os.path.join(sys.argv[1], 'flexref.py'), FLEXREF)


if __name__ == '__main__':
    main()
