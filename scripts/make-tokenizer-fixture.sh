#!/usr/bin/env bash
# make-tokenizer-fixture.sh regenerates the LLaMA tokenizer fixture of data/tokenizer and data/template.go:
#
#   data/testdata/tokenizer/llama/tokenizer.json.gz   a standard Hugging Face tokenizer.json (BPE, byte_fallback)
#   data/testdata/tokenizer/llama/expected.json       golden (text, ids) pairs and vicuna_v1 samples with labels
#
# Run from anywhere: scripts/make-tokenizer-fixture.sh   (needs node >= 18, npm and the npm registry)
#
# The vocabulary and merges are the real LLaMA-1/2 ones (also Vicuna-v1.5 and LLaVA-1.5), embedded in the MIT
# package llama-tokenizer-js@1.2.2. Every expected id is produced by that package's own encoder, never by flextrain.
# llama-tokenizer-js knows nothing of special tokens, so for text containing "<s>", "</s>" or "<unk>" the ids are the
# concatenation of the pieces between them, each piece encoded as SentencePiece encodes a fresh string (with its
# dummy "▁" prefix): that is what the slow LlamaTokenizer that LLaVA trains with does (legacy mode).
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
out="$repo/data/testdata/tokenizer/llama"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

mkdir -p "$out"
cd "$work"
npm init -y >/dev/null
npm install --no-audit --no-fund --silent llama-tokenizer-js@1.2.2

cat >gen.mjs <<'JS'
import fs from 'node:fs'
import tok from 'llama-tokenizer-js'

const [outDir] = process.argv.slice(2)
const SPECIAL = { '<unk>': 0, '<s>': 1, '</s>': 2 }
const IMAGE = -200, IGNORE = -100

// ---- tokenizer.json -------------------------------------------------------------------------------------------
function tokenizerJSON() {
  const vocab = {}
  tok.vocabById.forEach((s, i) => { vocab[s] = i })
  if (tok.vocabById.length !== 32000 || Object.keys(vocab).length !== 32000) throw Error('vocabulary is not 32000 unique tokens')
  const merges = [...tok.merges.entries()].sort((a, b) => a[1] - b[1]).map(([k]) => k)
  const added = Object.entries(SPECIAL).map(([content, id]) => (
    { id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true }))
  return {
    version: '1.0', truncation: null, padding: null, added_tokens: added,
    normalizer: { type: 'Sequence', normalizers: [
      { type: 'Prepend', prepend: '▁' },
      { type: 'Replace', pattern: { String: ' ' }, content: '▁' }] },
    pre_tokenizer: null,
    post_processor: { type: 'TemplateProcessing',
      single: [{ SpecialToken: { id: '<s>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
      pair: [{ SpecialToken: { id: '<s>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } },
             { SpecialToken: { id: '<s>', type_id: 1 } }, { Sequence: { id: 'B', type_id: 1 } }],
      special_tokens: { '<s>': { id: '<s>', ids: [1], tokens: ['<s>'] } } },
    decoder: { type: 'Sequence', decoders: [
      { type: 'Replace', pattern: { String: '▁' }, content: ' ' },
      { type: 'ByteFallback' }, { type: 'Fuse' },
      { type: 'Strip', content: ' ', start: 1, stop: 0 }] },
    model: { type: 'BPE', dropout: null, unk_token: '<unk>', continuing_subword_prefix: null,
      end_of_word_suffix: null, fuse_unk: true, byte_fallback: true, vocab, merges },
  }
}

// ---- golden encodings -----------------------------------------------------------------------------------------
// piece encodes text that starts a SentencePiece string (dummy "▁" prefix), without BOS.
const piece = (s) => (s === '' ? [] : tok.encode(s, false, true))
// cont encodes text that continues a string: it must begin with a space, which becomes its own "▁".
const cont = (s) => { if (!s.startsWith(' ')) throw Error(`continuation ${JSON.stringify(s)} must start with a space`); return tok.encode(s, false, false) }

// withSpecials splits on special tokens and encodes each piece on its own, as the slow LlamaTokenizer does.
function withSpecials(text, bos) {
  const ids = bos ? [SPECIAL['<s>']] : []
  for (const part of text.split(/(<unk>|<s>|<\/s>)/)) {
    if (part in SPECIAL) ids.push(SPECIAL[part]); else ids.push(...piece(part))
  }
  return ids
}

const SYSTEM = "A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, detailed, and polite answers to the user's questions."
const texts = [
  'grabbed', ' grabbed', '           grabbed', '\n', ' \n', '\ttabs\t\t\t\tout here', 'ax\n####\nboo', '镇', '🦙',
  '🦙Ꙋ', 'Ꙋ🦙', '', ' ', '  ', 'a', 'Hello world', 'Hello  world', 'Hello world ', '  leading and trailing  ',
  'multiple     spaces   here', SYSTEM,
  'What are the colors of the bus in the image?', 'The bus in the image is white and red.',
  '\nWhat is this?', 'What is this?\n', 'USER:', ' ASSISTANT:', 'USER: hi ASSISTANT: ',
  'In 1969, 3.14159 and 2,718,281 were 42% of $1,000,000.', '0123456789', '1+1=2; x*y/z - (a^b) ≠ c!',
  'Punctuation: "quotes", \'single\', (parens), [brackets], {braces}, <angles>, &amp; #hash @at ~tilde `tick`',
  'Mixed scripts: English, Deutsch (Größe), Français (déjà vu), Русский текст, 中文字符, 日本語のテキスト, 한국어, العربية, हिन्दी, Ελληνικά.',
  'Emoji 😀🎉👍🏽 and flags 🇫🇷 and ZWJ 👩‍💻.', 'tab\tand\r\ncarriage return', 'line one\nline two\n\nline four',
  'The quick brown fox jumps over the lazy dog. '.repeat(8),
  'A chat between a curious user and an artificial intelligence assistant.\n\nUSER: <image>\nDescribe the image in detail. ASSISTANT:',
  '<s>', '</s>', '<unk>', 'a</s>b', 'hello</s>', '</s>USER: hi', '<s>[INST] hi [/INST]', 'x <s> y </s> z', '<image>',
  '<s></s>', 'end.</s></s>',
]
const encodings = texts.map((text) => ({ text, ids: withSpecials(text, true) }))

// ---- vicuna_v1 samples ----------------------------------------------------------------------------------------
// A sample is described by segments that can be encoded one by one: each either starts a SentencePiece string
// (start), continues one with a leading space (cont), is a special id, or is the image. sup marks the labels
// an answer contributes. The segment boundaries are checked against whole-string encodings below.
const S = (text, sup = false) => ({ kind: 'start', text, sup })
const C = (text, sup = false) => ({ kind: 'cont', text, sup })
const EOS = { kind: 'id', id: 2, sup: true }
const IMG = { kind: 'image' }

function vicuna(turns, imageFirst) {
  // imageFirst: the first human turn is "<image>\n" + rest and the prompt is cut at <image>.
  const segs = []
  let open = true // whether the next text starts a fresh SentencePiece string
  const text = (t, sup) => { segs.push(open ? S(t, sup) : C(t, sup)); open = false }
  turns.forEach(([q, a], i) => {
    if (i === 0 && imageFirst) { text(SYSTEM + ' USER: '); segs.push(IMG); open = true; text('\n' + q) }
    else if (i === 0) { text(SYSTEM); text(' USER:'); text(' ' + q) }
    else { text('USER:'); text(' ' + q) }
    text(' ASSISTANT:'); text(' ' + a, true); segs.push(EOS); open = true
  })
  return segs
}

function build(segs) {
  const ids = [1], labels = [IGNORE]
  for (const s of segs) {
    let got
    if (s.kind === 'image') got = [IMAGE]
    else if (s.kind === 'id') got = [s.id]
    else got = s.kind === 'start' ? piece(s.text) : cont(s.text)
    ids.push(...got)
    labels.push(...got.map((id) => (s.sup ? id : IGNORE)))
  }
  return { ids, labels }
}

// prompt rebuilds the text the segments came from, and wholeIds encodes it as LLaVA's tokenizer_image_token does:
// split on <image>, encode each chunk (with BOS), keep the first BOS only, put IMAGE between chunks.
function prompt(segs) { return segs.map((s) => (s.kind === 'image' ? '<image>' : s.kind === 'id' ? '</s>' : s.text)).join('') }
function wholeIds(text) {
  const chunks = text.split('<image>').map((c) => withSpecials(c, true))
  const ids = [1]
  chunks.forEach((c, i) => { if (i > 0) ids.push(IMAGE); ids.push(...c.slice(1)) })
  return ids
}

const samples = []
function sample(name, conversations, hasImage, turns, imageFirst) {
  const segs = vicuna(turns, imageFirst)
  const { ids, labels } = build(segs)
  const whole = wholeIds(prompt(segs))
  if (JSON.stringify(whole) !== JSON.stringify(ids)) throw Error(`${name}: segment ids differ from whole-prompt ids`)
  samples.push({ name, has_image: hasImage, conversations, prompt: prompt(segs), ids, labels })
}
const h = (value) => ({ from: 'human', value }), g = (value) => ({ from: 'gpt', value })

sample('image_two_rounds', [h('<image>\nWhat are the colors of the bus in the image?'), g('The bus in the image is white and red.'),
  h('What feature can be seen on the back of the bus?'), g('The back of the bus features an advertisement.')], true,
  [['What are the colors of the bus in the image?', 'The bus in the image is white and red.'],
   ['What feature can be seen on the back of the bus?', 'The back of the bus features an advertisement.']], true)
sample('image_at_end_of_question', [h('What is unusual about this image?\n<image>'), g('A man is ironing clothes on the back of a taxi.')], true,
  [['What is unusual about this image?', 'A man is ironing clothes on the back of a taxi.']], true)
sample('text_only_two_rounds', [h('Write a haiku about llamas.'), g('Soft wool on the hills,\nllamas hum in morning mist,\nAndes breathe slowly.'),
  h('Translate it to French.'), g('Laine douce des collines, les lamas fredonnent.')], false,
  [['Write a haiku about llamas.', 'Soft wool on the hills,\nllamas hum in morning mist,\nAndes breathe slowly.'],
   ['Translate it to French.', 'Laine douce des collines, les lamas fredonnent.']], false)
sample('first_turn_from_gpt', [g('Hello! How can I help?'), h('Name a color.'), g('Blue.')], false,
  [['Name a color.', 'Blue.']], false)
sample('emoji_and_numbers', [h('<image>\nHow many 🦙 are there? Answer with a number.'), g('3 🦙, costing $1,250.50 each (镇).')], true,
  [['How many 🦙 are there? Answer with a number.', '3 🦙, costing $1,250.50 each (镇).']], true)

fs.writeFileSync(`${outDir}/tokenizer.json`, JSON.stringify(tokenizerJSON()))
fs.writeFileSync(`${outDir}/expected.json`, JSON.stringify({
  source: 'llama-tokenizer-js@1.2.2 (scripts/make-tokenizer-fixture.sh)', system: SYSTEM, encodings, samples }, null, 1) + '\n')
JS

node gen.mjs "$work"
gzip -9 -n -c "$work/tokenizer.json" >"$out/tokenizer.json.gz"
cp "$work/expected.json" "$out/expected.json"
ls -l "$out"
