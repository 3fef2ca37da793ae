package synth

import (
	"fmt"
	"strconv"
)

// What the questions and answers say. Every word here is in the vocabulary that tokenizer.json lists; answers
// are single words, so exact match scores them.

// letters are the single-letter sign texts: capitals without I and O, which the 7×13 font draws almost like
// 1 and 0.
var letters = []string{"A", "B", "C", "D", "E", "F", "G", "H", "J", "K", "L", "M", "N", "P", "Q", "R", "S", "T",
	"U", "V", "W", "X", "Y", "Z"}

// digits are the single-digit sign texts.
var digits = []string{"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"}

// smallWords are the short words small signs may show (three letters: a small sign stays small).
var smallWords = []string{"cat", "dog", "sun", "box", "car", "hat", "cup", "pen", "map", "key", "bus", "egg", "fox",
	"owl", "ink", "jar", "net", "pig", "rug", "toy"}

// facts are the text-only colour questions: a thing and its usual colour (a palette name).
var facts = []struct{ thing, colour string }{
	{"the sky", "blue"}, {"grass", "green"}, {"snow", "white"}, {"coal", "black"}, {"a banana", "yellow"},
	{"a tomato", "red"}, {"chocolate", "brown"}, {"a flamingo", "pink"}, {"a plum", "purple"},
	{"a carrot", "orange"},
}

// Question templates; %s is the slot. The suffix is the one LLaVA's and FlexAttention's evaluation scripts
// append for short answers.
const (
	askColour = "What color is the %s?"
	askShape  = "What shape is the %s object?"
	askRead   = "What is written on the %s sign?"
	askPlus   = "What is %s plus %s?"
	askMinus  = "What is %s minus %s?"
	askAfter  = "What number comes after %s?"
	askFact   = "What color is %s?"
	suffix    = "\nAnswer the question using a single word or phrase."
)

// maxNumber is the largest number an answer can be (9 plus 9).
const maxNumber = 18

// numbers returns "0" … "maxNumber".
func numbers() []string {
	out := make([]string, maxNumber+1)
	for i := range out {
		out[i] = strconv.Itoa(i)
	}
	return out
}

// textQuestion draws one text-only question and its answer.
func textQuestion(r *rng) (task, question, answer string) {
	switch r.intn(4) {
	case 0:
		a, b := r.intn(10), r.intn(10)
		return "plus", fmt.Sprintf(askPlus, strconv.Itoa(a), strconv.Itoa(b)), strconv.Itoa(a + b)
	case 1:
		a := r.intn(10)
		b := r.intn(a + 1)
		return "minus", fmt.Sprintf(askMinus, strconv.Itoa(a), strconv.Itoa(b)), strconv.Itoa(a - b)
	case 2:
		n := r.intn(maxNumber)
		return "after", fmt.Sprintf(askAfter, strconv.Itoa(n)), strconv.Itoa(n + 1)
	}
	f := pick(r, facts)
	return "fact", fmt.Sprintf(askFact, f.thing), f.colour
}
