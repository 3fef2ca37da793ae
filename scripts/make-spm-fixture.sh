#!/usr/bin/env bash
# make-spm-fixture.sh regenerates the SentencePiece fixtures of data/tokenizer (spm_test.go):
#
#   data/tokenizer/testdata/spm/llama.model       BPE trained with LLaMA's options (byte fallback, dummy prefix,
#                                                 identity normalization, extra spaces kept, digits split)
#   data/tokenizer/testdata/spm/variant.model     the same corpus without byte fallback, with extra spaces
#                                                 removed, user-defined and control symbols and a pad id
#   data/tokenizer/testdata/spm/<name>.json       golden (text, ids, decoded) triples for each model
#
# Run from anywhere: scripts/make-spm-fixture.sh
# Needs Debian's SentencePiece: apt-get install -y sentencepiece python3-sentencepiece (spm_train, spm_encode and
# the Python module; set PYTHON to a python3 that can import sentencepiece if the first one on PATH cannot).
# CI does not run this script: it only runs the Go tests against the committed files.
#
# Every expected id comes from SentencePiece itself, never from flextrain. Text containing <s>, </s> or <unk> is
# encoded as the slow LlamaTokenizer encodes it: split on those special tokens, each piece between them encoded by
# SentencePiece as a fresh string (with its dummy prefix), the special tokens as their ids. Each text without a
# newline is also encoded with spm_encode --output_format=id, which must agree with the Python module.
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
out="$repo/data/tokenizer/testdata/spm"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$out"

python=""
for p in "${PYTHON:-}" python3 /usr/bin/python3; do
  if [ -n "$p" ] && "$p" -c 'import sentencepiece' 2>/dev/null; then python="$p"; break; fi
done
if [ -z "$python" ]; then
  echo "make-spm-fixture.sh: no python3 that imports sentencepiece (apt-get install -y python3-sentencepiece)" >&2
  exit 1
fi
command -v spm_train >/dev/null && command -v spm_encode >/dev/null || {
  echo "make-spm-fixture.sh: spm_train and spm_encode are missing (apt-get install -y sentencepiece)" >&2
  exit 1
}

# ---- corpus: plain English with chat turns, numbers, indented code and a little German, one sentence a line ------
cd "$work" # relative paths: the trainer spec in each model records them
"$python" - corpus.txt <<'PY'
import sys
lines = [
    "A chat between a curious user and an artificial intelligence assistant.",
    "The assistant gives helpful, detailed, and polite answers to the user's questions.",
    "USER: What are the colors of the bus in the image? ASSISTANT: The bus in the image is white and red.",
    "USER: What feature can be seen on the back of the bus? ASSISTANT: The back of the bus features an advertisement.",
    "USER: What is unusual about this image? ASSISTANT: A man is ironing clothes on the back of a taxi.",
    "Llamas live in the Andes and hum softly in the morning mist.",
    "The quick brown fox jumps over the lazy dog.",
    "In 1969, 3.14159 and 2,718,281 were 42% of $1,000,000.",
    "The train left at 10:45 and arrived at 12:30, two hours later.",
    "    for i in range(10):",
    "        print(i * 2)",
    "    return the answer",
    "Die Größe der Straße ist schön, und die Füße sind müde.",
    "Größe, Straße, schön: the words with umlauts and the sharp s.",
]
with open(sys.argv[1], "w", encoding="utf-8") as f:
    for _ in range(30):
        f.write("\n".join(lines) + "\n")
PY

# ---- models ------------------------------------------------------------------------------------------------------
common=(--input=corpus.txt --model_type=bpe --num_threads=1 --minloglevel=2
        --unk_id=0 --bos_id=1 --eos_id=2 --normalization_rule_name=identity --add_dummy_prefix=true
        --split_digits=true --character_coverage=0.99995)
spm_train "${common[@]}" --model_prefix=llama --vocab_size=480 --pad_id=-1 \
  --byte_fallback=true --remove_extra_whitespaces=false --allow_whitespace_only_pieces=true
spm_train "${common[@]}" --model_prefix=variant --vocab_size=150 --pad_id=3 \
  --byte_fallback=false --remove_extra_whitespaces=true --user_defined_symbols='<image>,<ctx>' \
  --control_symbols='<ctl>'

# ---- golden encodings --------------------------------------------------------------------------------------------
cat >gen.py <<'PY'
import json, re, subprocess, sys
import sentencepiece as spm

model, out_json, name = sys.argv[1:4]
sp = spm.SentencePieceProcessor(model_file=model)
special = {sp.id_to_piece(i): i for i in (sp.unk_id(), sp.bos_id(), sp.eos_id()) if i >= 0}
split = re.compile("(" + "|".join(re.escape(s) for s in sorted(special, key=len, reverse=True)) + ")")

def encode(text):
    """The slow LlamaTokenizer's ids (legacy): special tokens matched first, each piece a fresh string."""
    ids = []
    for part in split.split(text):
        ids.extend([special[part]] if part in special else sp.encode(part) if part else [])
    return ids

texts = [
    "", " ", "  ", "a", "Hello world", "Hello  world", "Hello world ", " leading", "trailing ", "  both ends  ",
    "multiple     spaces   here", "\n", " \n", "\n\n", "line one\nline two\n\nline four", "tab\tand\r\ncarriage return",
    "\ttabs\t\t\tout here", "0123456789", "In 1969, 3.14159 and 2,718,281 were 42% of $1,000,000.", "12:30 or 10:45?",
    "é", "café, déjà vu", "中", "中文字符 and 日本語", "🦙", "Emoji 😀🎉👍🏽, flags 🇫🇷 and ZWJ 👩‍💻.", "Größe der Straße",
    "Русский текст", "\ufffd", "x\x00y", "▁", "a▁b", "▁▁ two", "ｆｕｌｌｗｉｄｔｈ", "A chat between a curious user and an artificial intelligence assistant.",
    "USER: What is unusual about this image? ASSISTANT:", " ASSISTANT: The bus in the image is white and red.",
    "The quick brown fox jumps over the lazy dog. " * 6, "    for i in range(10):\n        print(i * 2)",
    "<image>", "a<image>b", " <image> \nDescribe it.", "<ctx><image><ctl>", "<s>", "</s>", "<unk>", "a</s>b", "hello</s>",
    "</s>USER: hi", "<s>[INST] hi [/INST]", "x <s> y </s> z", "<s></s>", "end.</s></s>", "<</s>>", "<s",
]
encodings = []
for text in texts:
    ids = encode(text)
    has_special = any(s in text for s in special)
    decoded = None if has_special else sp.decode(ids)
    encodings.append({"text": text, "ids": ids, "decoded": decoded})

# spm_encode must agree with the Python module on every text it can read (one a line, no special tokens).
lines = [e for e in encodings if "\n" not in e["text"] and "\r" not in e["text"] and "\x00" not in e["text"]
         and not any(s in e["text"] for s in special)]
res = subprocess.run(["spm_encode", "--model=" + model, "--output_format=id"], input="".join(e["text"] + "\n" for e in lines),
                     capture_output=True, text=True, check=True)
got = res.stdout.split("\n")[:len(lines)]
for e, line in zip(lines, got):
    ids = [int(x) for x in line.split()]
    if ids != e["ids"]:
        sys.exit(f"spm_encode disagrees with the Python module on {e['text']!r}: {ids} != {e['ids']}")
print(f"{name}: {len(encodings)} texts, {len(lines)} also through spm_encode", file=sys.stderr)

info = {"vocab_size": sp.get_piece_size(), "bos": sp.bos_id(), "eos": sp.eos_id(), "unk": sp.unk_id(), "pad": sp.pad_id()}
with open(out_json, "w", encoding="utf-8") as f:
    json.dump({"source": f"SentencePiece {spm.__version__} (scripts/make-spm-fixture.sh)", "model": name + ".model",
               "ids": info, "encodings": encodings}, f, ensure_ascii=False, indent=1)
    f.write("\n")
PY

for name in llama variant; do
  cp "$name.model" "$out/$name.model"
  "$python" gen.py "$out/$name.model" "$out/$name.json" "$name"
done
ls -l "$out"
