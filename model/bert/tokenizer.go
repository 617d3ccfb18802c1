// Package bert holds BERT as BLIP (and so ImageReward) uses it: the
// uncased WordPiece tokenizer (this file) and the med.py encoder with
// cross-attention over image tokens (encoder.go).
package bert

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"unicode"

	"golang.org/x/text/unicode/norm"
)

// Ids of bert-base-uncased's special tokens, and the two that BLIP adds.
const (
	PadID  = 0
	UnkID  = 100
	ClsID  = 101
	SepID  = 102
	MaskID = 103
	// DecID and EncID are BLIP's added tokens ([DEC] as bos_token, [ENC]
	// as an additional special token), appended after the 30522-line vocab.
	DecID = 30522
	EncID = 30523
)

// maxWordChars is WordPiece's max_input_chars_per_word: longer words are
// one [UNK].
const maxWordChars = 100

// Tokenizer is Hugging Face's (slow, Python) BertTokenizer for an uncased
// vocabulary, with BLIP's added [DEC] and [ENC] tokens:
//
//  1. special tokens ([PAD], [UNK], [CLS], [SEP], [MASK], [DEC], [ENC])
//     written literally in the text are split off and kept as such;
//  2. basic tokenization of the rest: drop NUL, U+FFFD and control
//     characters (category C* except tab/newline/CR), map whitespace to a
//     space, put spaces around CJK ideographs, NFC, split on whitespace,
//     lowercase, NFD and drop combining marks (Mn), split off punctuation
//     (ASCII 33-47, 58-64, 91-96, 123-126 and Unicode P*);
//  3. WordPiece: greedy longest match first with "##" continuations; a word
//     with an unmatched piece, or longer than 100 characters, is one [UNK].
type Tokenizer struct {
	vocab   map[string]int32
	special []string // split off before basic tokenization, longest first
}

// LoadTokenizer reads a WordPiece vocabulary (one token per line, id = line
// number): path is vocab.txt itself or a folder holding it. [DEC] and [ENC]
// are added after the file's tokens, as BLIP's init_tokenizer does.
func LoadTokenizer(path string) (*Tokenizer, error) {
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		path = filepath.Join(path, "vocab.txt")
	}
	fh, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("bert tokenizer: %w", err)
	}
	defer fh.Close()
	t := &Tokenizer{vocab: map[string]int32{}}
	sc := bufio.NewScanner(fh)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	sc.Split(scanLF)
	var n int32
	for sc.Scan() {
		tok := sc.Text()
		if _, dup := t.vocab[tok]; !dup { // the first occurrence wins lookups, as in HF
			t.vocab[tok] = n
		}
		n++
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("bert tokenizer: %s: %w", path, err)
	}
	for tok, want := range map[string]int32{"[PAD]": PadID, "[UNK]": UnkID, "[CLS]": ClsID, "[SEP]": SepID} {
		if id, ok := t.vocab[tok]; !ok || id != want {
			return nil, fmt.Errorf("bert tokenizer: %s: %s is not id %d: not a bert-base-uncased vocabulary", path, tok, want)
		}
	}
	if n != DecID {
		return nil, fmt.Errorf("bert tokenizer: %s has %d tokens, bert-base-uncased has %d ([DEC]/[ENC] would get other ids)", path, n, DecID)
	}
	t.vocab["[DEC]"], t.vocab["[ENC]"] = DecID, EncID
	t.special = []string{"[MASK]", "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[DEC]", "[ENC]"}
	return t, nil
}

// scanLF splits on '\n' only (HF strips just the newline of each line).
func scanLF(data []byte, atEOF bool) (int, []byte, error) {
	for i, b := range data {
		if b == '\n' {
			return i + 1, data[:i], nil
		}
	}
	if atEOF && len(data) > 0 {
		return len(data), data, nil
	}
	return 0, nil, nil
}

// VocabSize is the number of ids (30524 with [DEC] and [ENC]).
func (t *Tokenizer) VocabSize() int { return len(t.vocab) }

// ID returns a token's id.
func (t *Tokenizer) ID(tok string) (int32, bool) { id, ok := t.vocab[tok]; return id, ok }

// Tokenize returns the wordpiece ids of text, without [CLS]/[SEP].
func (t *Tokenizer) Tokenize(text string) []int32 {
	var ids []int32
	for len(text) > 0 {
		at, tok := len(text), ""
		for _, s := range t.special {
			if i := strings.Index(text, s); i >= 0 && i < at {
				at, tok = i, s
			}
		}
		for _, w := range basicTokens(text[:at]) {
			ids = t.wordPiece(w, ids)
		}
		if tok == "" {
			break
		}
		ids = append(ids, t.vocab[tok])
		text = text[at+len(tok):]
	}
	return ids
}

// Encoded is a padded batch of sequences.
type Encoded struct {
	IDs  [][]int32 // [N][L]: [CLS] wordpieces [SEP] [PAD]...
	Mask [][]int32 // [N][L]: 1 for real tokens, 0 for padding
}

// Encode tokenizes each text as tokenizer(text, padding="max_length",
// truncation=True, max_length=maxLen): [CLS] + the first maxLen-2
// wordpieces + [SEP], padded with [PAD] to maxLen. ImageReward uses 35.
func (t *Tokenizer) Encode(texts []string, maxLen int) (Encoded, error) {
	if maxLen < 2 {
		return Encoded{}, fmt.Errorf("bert tokenizer: max length %d leaves no room for [CLS] and [SEP]", maxLen)
	}
	var out Encoded
	for _, s := range texts {
		w := t.Tokenize(s)
		if len(w) > maxLen-2 {
			w = w[:maxLen-2]
		}
		ids := make([]int32, maxLen)
		mask := make([]int32, maxLen)
		ids[0] = ClsID
		copy(ids[1:], w)
		ids[len(w)+1] = SepID
		for i := 0; i < len(w)+2; i++ {
			mask[i] = 1
		}
		out.IDs = append(out.IDs, ids)
		out.Mask = append(out.Mask, mask)
	}
	return out, nil
}

// wordPiece appends the ids of one basic token.
func (t *Tokenizer) wordPiece(word string, ids []int32) []int32 {
	chars := []rune(word)
	if len(chars) > maxWordChars {
		return append(ids, UnkID)
	}
	var pieces []int32
	for start := 0; start < len(chars); {
		end, found := len(chars), int32(-1)
		for ; start < end; end-- {
			sub := string(chars[start:end])
			if start > 0 {
				sub = "##" + sub
			}
			if id, ok := t.vocab[sub]; ok {
				found = id
				break
			}
		}
		if found < 0 {
			return append(ids, UnkID)
		}
		pieces = append(pieces, found)
		start = end
	}
	return append(ids, pieces...)
}

// basicTokens is BasicTokenizer.tokenize with do_lower_case=True and
// tokenize_chinese_chars=True.
func basicTokens(text string) []string {
	var b strings.Builder
	for _, r := range text {
		switch {
		case r == 0 || r == 0xFFFD || isControl(r):
		case isWhitespace(r):
			b.WriteByte(' ')
		case isCJK(r):
			b.WriteByte(' ')
			b.WriteRune(r)
			b.WriteByte(' ')
		default:
			b.WriteRune(r)
		}
	}
	var out []string
	for _, tok := range strings.FieldsFunc(norm.NFC.String(b.String()), unicode.IsSpace) {
		tok = stripAccents(lower(tok))
		out = append(out, splitPunct(tok)...)
	}
	return out
}

func isWhitespace(r rune) bool {
	return r == ' ' || r == '\t' || r == '\n' || r == '\r' || unicode.Is(unicode.Zs, r)
}

// isControl is category C* (Cc, Cf, Cs, Co, Cn), except tab, newline and
// carriage return.
func isControl(r rune) bool {
	if r == '\t' || r == '\n' || r == '\r' {
		return false
	}
	if r < 0x80 {
		return r < 0x20 || r == 0x7f
	}
	return unicode.IsControl(r) || unicode.In(r, unicode.Cf, unicode.Cs, unicode.Co) || !isAssigned(r)
}

func isAssigned(r rune) bool {
	for _, t := range unicode.Categories {
		if unicode.Is(t, r) {
			return true
		}
	}
	return false
}

func isPunct(r rune) bool {
	if r >= 33 && r <= 47 || r >= 58 && r <= 64 || r >= 91 && r <= 96 || r >= 123 && r <= 126 {
		return true
	}
	return unicode.IsPunct(r)
}

// isCJK is BERT's "Chinese character" test (CJK Unified Ideographs blocks,
// not Hangul or kana).
func isCJK(r rune) bool {
	return r >= 0x4E00 && r <= 0x9FFF || r >= 0x3400 && r <= 0x4DBF || r >= 0x20000 && r <= 0x2A6DF ||
		r >= 0x2A700 && r <= 0x2B73F || r >= 0x2B740 && r <= 0x2B81F || r >= 0x2B820 && r <= 0x2CEAF ||
		r >= 0xF900 && r <= 0xFAFF || r >= 0x2F800 && r <= 0x2FA1F
}

// lower is Python's str.lower for what matters here: full lowercase
// mapping with the final-sigma rule.
func lower(s string) string {
	rs := []rune(s)
	var b strings.Builder
	for i, r := range rs {
		switch {
		case r == 'Σ':
			final := i > 0 && unicode.IsLetter(rs[i-1]) && (i+1 == len(rs) || !unicode.IsLetter(rs[i+1]))
			if final {
				b.WriteRune('ς')
			} else {
				b.WriteRune('σ')
			}
		case r == 'İ':
			b.WriteString("i\u0307")
		default:
			b.WriteRune(unicode.ToLower(r))
		}
	}
	return b.String()
}

func stripAccents(s string) string {
	var b strings.Builder
	for _, r := range norm.NFD.String(s) {
		if !unicode.Is(unicode.Mn, r) {
			b.WriteRune(r)
		}
	}
	return b.String()
}

func splitPunct(s string) []string {
	var out []string
	start := 0
	for i, r := range s {
		if isPunct(r) {
			if start < i {
				out = append(out, s[start:i])
			}
			out = append(out, string(r))
			start = i + len(string(r))
		}
	}
	if start < len(s) {
		out = append(out, s[start:])
	}
	return out
}
