// Package clip holds CLIP as Stable Diffusion and the metrics use it: the
// byte-level BPE tokenizer (this file), the text transformer (text.go),
// the vision transformer (vision.go) and the two-tower CLIPModel with its
// projections (model.go), all under transformers' parameter names.
package clip

import (
	"bufio"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"unicode/utf8"
)

// Special token ids of CLIP's vocabulary.
const (
	StartOfText = 49406
	EndOfText   = 49407
	// ContextLength is the text encoder's number of positions.
	ContextLength = 77
)

// Tokenizer is CLIP's byte-level BPE tokenizer (openai simple_tokenizer,
// which Hugging Face's CLIPTokenizer reproduces).
type Tokenizer struct {
	encoder  map[string]int32
	ranks    map[[2]string]int
	byteEnc  [256]string
	pattern  *regexp.Regexp
	cache    map[string][]int32
	startTok int32
	endTok   int32
}

// openai's pre-tokenizer: special tokens, English contractions, letter
// runs, single digits, and runs of other non-space characters.
const pretokenize = `<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+`

// bytesToUnicode maps every byte to a printable rune: printable Latin-1
// bytes map to themselves, the rest to 256, 257, ... in byte order. It
// returns the mapping and the order of bytes that the vocabulary uses.
func bytesToUnicode() (enc [256]string, order []int) {
	printable := func(b int) bool {
		return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF)
	}
	n := 0
	for b := 0; b < 256; b++ {
		if printable(b) {
			enc[b] = string(rune(b))
			order = append(order, b)
		}
	}
	for b := 0; b < 256; b++ {
		if !printable(b) {
			enc[b] = string(rune(256 + n))
			n++
			order = append(order, b)
		}
	}
	return
}

func newTokenizer(encoder map[string]int32, merges [][2]string) (*Tokenizer, error) {
	t := &Tokenizer{encoder: encoder, ranks: make(map[[2]string]int, len(merges)), pattern: regexp.MustCompile(pretokenize), cache: map[string][]int32{}}
	t.byteEnc, _ = bytesToUnicode()
	for i, m := range merges {
		t.ranks[m] = i
	}
	var ok1, ok2 bool
	t.startTok, ok1 = encoder["<|startoftext|>"]
	t.endTok, ok2 = encoder["<|endoftext|>"]
	if !ok1 || !ok2 {
		return nil, fmt.Errorf("clip tokenizer: vocabulary lacks <|startoftext|> or <|endoftext|>")
	}
	return t, nil
}

// LoadBPE builds the tokenizer from openai's bpe_simple_vocab_16e6.txt.gz,
// exactly as simple_tokenizer does: 256 byte tokens, the same with </w>,
// 48,894 merges, then the two special tokens.
func LoadBPE(path string) (*Tokenizer, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		return nil, fmt.Errorf("%s: not a gzip file: %w", path, err)
	}
	sc := bufio.NewScanner(zr)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	var merges [][2]string
	line := 0
	for sc.Scan() {
		line++
		if line == 1 {
			continue // version header
		}
		if len(merges) == 49152-256-2 {
			break
		}
		p := strings.Fields(sc.Text())
		if len(p) != 2 {
			return nil, fmt.Errorf("%s:%d: merge line must hold two symbols", path, line)
		}
		merges = append(merges, [2]string{p[0], p[1]})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(merges) != 49152-256-2 {
		return nil, fmt.Errorf("%s: %d merges, want 48894", path, len(merges))
	}
	enc, order := bytesToUnicode()
	encoder := map[string]int32{}
	id := int32(0)
	for _, b := range order {
		encoder[enc[b]] = id
		id++
	}
	for _, b := range order {
		encoder[enc[b]+"</w>"] = id
		id++
	}
	for _, m := range merges {
		encoder[m[0]+m[1]] = id
		id++
	}
	encoder["<|startoftext|>"] = id
	encoder["<|endoftext|>"] = id + 1
	return newTokenizer(encoder, merges)
}

// LoadHF builds the tokenizer from a Hugging Face tokenizer folder
// (vocab.json and merges.txt).
func LoadHF(dir string) (*Tokenizer, error) {
	vb, err := os.ReadFile(filepath.Join(dir, "vocab.json"))
	if err != nil {
		return nil, err
	}
	var encoder map[string]int32
	if err := json.Unmarshal(vb, &encoder); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, "vocab.json"), err)
	}
	mf, err := os.Open(filepath.Join(dir, "merges.txt"))
	if err != nil {
		return nil, err
	}
	defer mf.Close()
	merges, err := readMerges(mf, filepath.Join(dir, "merges.txt"))
	if err != nil {
		return nil, err
	}
	return newTokenizer(encoder, merges)
}

func readMerges(r io.Reader, name string) ([][2]string, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	var merges [][2]string
	line := 0
	for sc.Scan() {
		line++
		s := sc.Text()
		if strings.HasPrefix(s, "#version") || strings.TrimSpace(s) == "" {
			continue
		}
		p := strings.Fields(s)
		if len(p) != 2 {
			return nil, fmt.Errorf("%s:%d: merge line must hold two symbols", name, line)
		}
		merges = append(merges, [2]string{p[0], p[1]})
	}
	return merges, sc.Err()
}

// clean applies openai's basic_clean (html unescape twice, strip; ftfy is
// not reproduced) and whitespace_clean, then lower-cases.
var spaces = regexp.MustCompile(`\s+`)

func clean(text string) string {
	text = html.UnescapeString(html.UnescapeString(text))
	text = strings.TrimSpace(text)
	text = spaces.ReplaceAllString(text, " ")
	return strings.ToLower(strings.TrimSpace(text))
}

// bpe splits one pre-token (already byte-encoded) into vocabulary ids.
func (t *Tokenizer) bpe(token string) []int32 {
	if ids, ok := t.cache[token]; ok {
		return ids
	}
	var word []string
	for _, r := range token {
		word = append(word, string(r))
	}
	if len(word) == 0 {
		return nil
	}
	word[len(word)-1] += "</w>"
	for len(word) > 1 {
		best, bi := -1, -1
		for i := 0; i+1 < len(word); i++ {
			if r, ok := t.ranks[[2]string{word[i], word[i+1]}]; ok && (best < 0 || r < best) {
				best, bi = r, i
			}
		}
		if bi < 0 {
			break
		}
		a, b := word[bi], word[bi+1]
		var next []string
		for i := 0; i < len(word); {
			if i+1 < len(word) && word[i] == a && word[i+1] == b {
				next = append(next, a+b)
				i += 2
			} else {
				next = append(next, word[i])
				i++
			}
		}
		word = next
	}
	ids := make([]int32, 0, len(word))
	for _, w := range word {
		id, ok := t.encoder[w]
		if !ok {
			id = t.endTok // unk_token is <|endoftext|>
		}
		ids = append(ids, id)
	}
	t.cache[token] = ids
	return ids
}

// Encode returns the BPE ids of text, without start/end tokens.
func (t *Tokenizer) Encode(text string) []int32 {
	var out []int32
	for _, m := range t.pattern.FindAllString(clean(text), -1) {
		if m == "<|startoftext|>" {
			out = append(out, t.startTok)
			continue
		}
		if m == "<|endoftext|>" {
			out = append(out, t.endTok)
			continue
		}
		var sb strings.Builder
		for i := 0; i < len(m); i++ {
			sb.WriteString(t.byteEnc[m[i]])
		}
		out = append(out, t.bpe(sb.String())...)
	}
	return out
}

// EncodeSD returns Stable Diffusion's 77 ids: start token, at most 75 BPE
// ids, end token, padded with the end token. truncated reports whether the
// prompt was cut.
func (t *Tokenizer) EncodeSD(text string) (ids [ContextLength]int32, truncated bool) {
	bpe := t.Encode(text)
	if len(bpe) > ContextLength-2 {
		bpe, truncated = bpe[:ContextLength-2], true
	}
	ids[0] = t.startTok
	copy(ids[1:], bpe)
	for i := 1 + len(bpe); i < ContextLength; i++ {
		ids[i] = t.endTok
	}
	return ids, truncated
}

// Decode turns ids back into text (</w> becomes a space).
func (t *Tokenizer) Decode(ids []int32) string {
	dec := map[int32]string{}
	for k, v := range t.encoder {
		dec[v] = k
	}
	byteDec := map[rune]byte{}
	for b, s := range t.byteEnc {
		r, _ := utf8.DecodeRuneInString(s)
		byteDec[r] = byte(b)
	}
	var raw []byte
	for _, id := range ids {
		s := strings.ReplaceAll(dec[id], "</w>", " ")
		for _, r := range s {
			if r == ' ' {
				raw = append(raw, ' ')
			} else if b, ok := byteDec[r]; ok {
				raw = append(raw, b)
			}
		}
	}
	return strings.TrimSpace(string(raw))
}
