package bert

import (
	"encoding/json"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/instructbooth/instructbooth/internal/testenv"
	"github.com/instructbooth/instructbooth/model/safetensors"
)

func loadTokenizer(t *testing.T) *Tokenizer {
	t.Helper()
	tok, err := LoadTokenizer(filepath.Join(testenv.Fixtures(t), "bert-vocab"))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// TestTokenizer_matchesHF compares the ids and masks of the fixture's 12
// prompts (accents, CJK, emoji, punctuation, tabs, the empty string, a
// truncated prompt) with transformers' BertTokenizer, exactly.
func TestTokenizer_matchesHF(t *testing.T) {
	tok := loadTokenizer(t)
	if tok.VocabSize() != 30524 {
		t.Errorf("vocab size %d, want 30524", tok.VocabSize())
	}
	ref, err := safetensors.Open(filepath.Join(testenv.Fixtures(t), "rewards-tiny", "ref", "bert_tokenizer.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer ref.Close()
	var prompts []string
	if err := json.Unmarshal([]byte(ref.Metadata["prompts"]), &prompts); err != nil {
		t.Fatal(err)
	}
	var untrunc [][]int32
	if err := json.Unmarshal([]byte(ref.Metadata["untruncated_ids"]), &untrunc); err != nil {
		t.Fatal(err)
	}
	ids, info, err := ref.Int64("out/input_ids")
	if err != nil {
		t.Fatal(err)
	}
	mask, _, err := ref.Int64("out/attention_mask")
	if err != nil {
		t.Fatal(err)
	}
	n, l := info.Shape[0], info.Shape[1]
	if len(prompts) != n || l != 35 {
		t.Fatalf("%d prompts, ids %v", len(prompts), info.Shape)
	}
	enc, err := tok.Encode(prompts, l)
	if err != nil {
		t.Fatal(err)
	}
	for i := range prompts {
		for j := 0; j < l; j++ {
			if int64(enc.IDs[i][j]) != ids[i*l+j] || int64(enc.Mask[i][j]) != mask[i*l+j] {
				t.Errorf("prompt %d %q:\n got %v\nwant %v", i, prompts[i], enc.IDs[i], ids[i*l:(i+1)*l])
				break
			}
		}
		full := append(append([]int32{ClsID}, tok.Tokenize(prompts[i])...), SepID)
		if !reflect.DeepEqual(full, untrunc[i]) {
			t.Errorf("prompt %d untruncated:\n got %v\nwant %v", i, full, untrunc[i])
		}
	}
}

func TestTokenizer_published(t *testing.T) {
	tok := loadTokenizer(t)
	enc, err := tok.Encode([]string{"Hello, my dog is cute"}, 8)
	if err != nil {
		t.Fatal(err)
	}
	if want := []int32{101, 7592, 1010, 2026, 3899, 2003, 10140, 102}; !reflect.DeepEqual(enc.IDs[0], want) {
		t.Errorf("got %v, want %v", enc.IDs[0], want)
	}
	// Special tokens written in the text stay whole; BLIP's added ones get
	// their appended ids; a 101-character word is one [UNK].
	long := ""
	for i := 0; i < 101; i++ {
		long += "a"
	}
	got := tok.Tokenize("[DEC] a [MASK]b [ENC] " + long)
	if want := []int32{DecID, 1037, MaskID, 1038, EncID, UnkID}; !reflect.DeepEqual(got, want) {
		t.Errorf("specials: got %v, want %v", got, want)
	}
	if _, err := tok.Encode([]string{"x"}, 1); err == nil {
		t.Error("max length 1 accepted")
	}
}

func TestLoadTokenizer_errors(t *testing.T) {
	if _, err := LoadTokenizer(filepath.Join(t.TempDir(), "nope.txt")); err == nil {
		t.Error("missing file accepted")
	}
}
