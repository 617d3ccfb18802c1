package toyworld

import (
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"github.com/instructbooth/instructbooth/model/clip"
)

// The toy model's tokenizer is a CLIP BPE tokenizer (clip.LoadHF reads it
// from the saved tokenizer/ folder) over a small vocabulary: the 26
// letters with and without the end-of-word mark, ",</w>" and ".</w>", one
// token for every word the world's captions use plus the rare identifier
// words of DreamBooth, and the two special tokens last (so the end token
// has the largest id, as in CLIP). The merges are learned by running BPE
// training on the word list until every word is one symbol, so encoding
// any listed word gives exactly one token and any other lower-case word
// falls back to smaller pieces.

// Identifiers are rare words the base training captions never use, for
// naming a DreamBooth subject ("a photo of sks star"). Their embeddings
// stay at their initial values during base training, like a rare token of
// CLIP's vocabulary in SD.
var Identifiers = []string{"sks", "zwx", "qrv"}

// vocabWords lists every word a caption of the world can contain.
func vocabWords() []string {
	words := map[string]bool{}
	add := func(text string) {
		for _, w := range strings.Fields(text) {
			words[w] = true
		}
	}
	add("a photo of the an in on at with it and plain background")
	for _, c := range Classes {
		add(c.String())
	}
	for _, c := range Colors {
		add(c.String())
	}
	for _, b := range Backgrounds {
		add(b.Phrase())
	}
	for _, a := range Accessories {
		add(a.Phrase())
	}
	for _, a := range Actions {
		add(a.Phrase())
	}
	for _, id := range Identifiers {
		add(id)
	}
	out := make([]string, 0, len(words))
	for w := range words {
		out = append(out, w)
	}
	sort.Strings(out)
	return out
}

type bpeVocab struct {
	merges [][2]string
	ids    map[string]int32
}

var vocabOnce = sync.OnceValue(buildVocab)

// buildVocab trains BPE on the word list: repeatedly merge the most
// frequent adjacent pair (ties broken by the pair's text) until every
// word is one symbol.
func buildVocab() *bpeVocab {
	var words [][]string
	for _, w := range vocabWords() {
		var s []string
		for _, r := range w {
			s = append(s, string(r))
		}
		s[len(s)-1] += "</w>"
		words = append(words, s)
	}
	v := &bpeVocab{ids: map[string]int32{}}
	var tokens []string
	for c := 'a'; c <= 'z'; c++ {
		tokens = append(tokens, string(c))
	}
	for c := 'a'; c <= 'z'; c++ {
		tokens = append(tokens, string(c)+"</w>")
	}
	tokens = append(tokens, ",</w>", ".</w>")
	for {
		count := map[[2]string]int{}
		for _, w := range words {
			for i := 0; i+1 < len(w); i++ {
				count[[2]string{w[i], w[i+1]}]++
			}
		}
		if len(count) == 0 {
			break
		}
		var best [2]string
		bc := 0
		for p, c := range count {
			if c > bc || (c == bc && p[0]+" "+p[1] < best[0]+" "+best[1]) {
				best, bc = p, c
			}
		}
		v.merges = append(v.merges, best)
		tokens = append(tokens, best[0]+best[1])
		for i, w := range words {
			var next []string
			for j := 0; j < len(w); j++ {
				if j+1 < len(w) && w[j] == best[0] && w[j+1] == best[1] {
					next = append(next, best[0]+best[1])
					j++
				} else {
					next = append(next, w[j])
				}
			}
			words[i] = next
		}
	}
	tokens = append(tokens, "<|startoftext|>", "<|endoftext|>")
	for _, t := range tokens {
		if _, ok := v.ids[t]; !ok {
			v.ids[t] = int32(len(v.ids))
		}
	}
	return v
}

// VocabSize is the number of tokens of the toy vocabulary.
func VocabSize() int { return len(vocabOnce().ids) }

func startID() int32 { return vocabOnce().ids["<|startoftext|>"] }
func endID() int32   { return vocabOnce().ids["<|endoftext|>"] }

func vocabMap() map[string]int32 { return vocabOnce().ids }

func mergesText() string {
	var b strings.Builder
	b.WriteString("#version: 0.2\n")
	for _, m := range vocabOnce().merges {
		b.WriteString(m[0] + " " + m[1] + "\n")
	}
	return b.String()
}

// NewTokenizer returns the toy vocabulary's tokenizer (the same one a
// saved model's tokenizer/ folder gives).
func NewTokenizer() (*clip.Tokenizer, error) {
	// clip builds tokenizers from files only: write the folder and read it.
	dir, err := os.MkdirTemp("", "toyworld-tokenizer")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	if err := WriteTokenizer(dir); err != nil {
		return nil, err
	}
	return clip.LoadHF(dir)
}

// WriteTokenizer writes the toy vocabulary as a Hugging Face tokenizer
// folder (vocab.json, merges.txt) into dir.
func WriteTokenizer(dir string) error {
	b, err := json.Marshal(vocabMap())
	if err != nil {
		return err
	}
	if err := writeFileAtomic(filepath.Join(dir, "vocab.json"), b); err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(dir, "merges.txt"), []byte(mergesText()))
}
