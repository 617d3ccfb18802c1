package clip

import (
	"encoding/json"
	"path/filepath"
	"testing"

	"github.com/instructbooth/instructbooth/internal/testenv"

	"github.com/instructbooth/instructbooth/model/safetensors"
)

func fixtures(t testing.TB) string {
	t.Helper()
	return testenv.Fixtures(t)
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
