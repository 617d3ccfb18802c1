package clip

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/instructbooth/instructbooth/model/safetensors"
)

func fixtures(t testing.TB) string {
	t.Helper()
	dir, _ := os.Getwd()
	for d := dir; d != "/"; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			p := filepath.Join(d, "..", "shared", "fixtures")
			if _, err := os.Stat(p); err != nil {
				t.Fatalf("fixtures not found at %s", p)
			}
			return p
		}
	}
	t.Fatal("go.mod not found")
	return ""
}

// TestTokenizer_matchesReference: both loaders reproduce the reference ids
// of all nine prompts exactly (case, punctuation, digits, apostrophes,
// tabs/newlines, accents and a prompt longer than 75 tokens).
func TestTokenizer_matchesReference(t *testing.T) {
	fx := fixtures(t)
	ref, err := safetensors.Open(filepath.Join(fx, "sd-tiny", "ref", "tokenizer.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer ref.Close()
	var prompts []string
	if err := json.Unmarshal([]byte(ref.Metadata["prompts"]), &prompts); err != nil || len(prompts) != 9 {
		t.Fatalf("prompts metadata: %v (%d)", err, len(prompts))
	}
	want, _, err := ref.Int64("out/input_ids")
	if err != nil {
		t.Fatal(err)
	}
	hf, err := LoadHF(filepath.Join(fx, "sd-tiny", "diffusers", "tokenizer"))
	if err != nil {
		t.Fatal(err)
	}
	gz, err := LoadBPE(filepath.Join(fx, "clip-bpe", "bpe_simple_vocab_16e6.txt.gz"))
	if err != nil {
		t.Fatal(err)
	}
	for name, tok := range map[string]*Tokenizer{"vocab.json+merges.txt": hf, "bpe gz": gz} {
		for i, p := range prompts {
			ids, trunc := tok.EncodeSD(p)
			for j, id := range ids {
				if int64(id) != want[i*77+j] {
					t.Errorf("%s: prompt %q: id %d = %d, want %d", name, p, j, id, want[i*77+j])
					break
				}
			}
			if trunc != (i == 8) {
				t.Errorf("%s: prompt %d truncated = %v", name, i, trunc)
			}
		}
	}
	if got := hf.Decode(hf.Encode("a photo of sks dog")); got != "a photo of sks dog" {
		t.Errorf("decode round trip: %q", got)
	}
}
