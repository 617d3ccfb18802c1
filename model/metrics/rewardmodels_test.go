package metrics

import (
	"context"
	"encoding/json"
	"image"
	"math"
	"path/filepath"
	"testing"

	"github.com/instructbooth/instructbooth/internal/testenv"
	"github.com/instructbooth/instructbooth/model/dino"
	"github.com/instructbooth/instructbooth/model/imagereward"
)

// TestImageRewardScorer scores the fixture's raw images (through
// ImageReward's own preprocessing) against its three prompts and compares
// with the stored normalised rewards.
func TestImageRewardScorer(t *testing.T) {
	e := testenv.Engine(t)
	fx := testenv.Fixtures(t)
	m, err := imagereward.Load(e, filepath.Join(fx, "rewards-tiny", "imagereward", "ImageReward.safetensors"),
		imagereward.Options{VocabPath: filepath.Join(fx, "bert-vocab", "vocab.txt")})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Release()
	ref := fixtureFile(t, "imagereward.safetensors")
	var prompts []string
	if err := json.Unmarshal([]byte(ref.Metadata["prompts"]), &prompts); err != nil {
		t.Fatal(err)
	}
	want, _, err := ref.Float32("out/reward") // [prompt, image]
	if err != nil {
		t.Fatal(err)
	}
	imgs := fixtureImages(t)
	var ps []string
	var is []image.Image
	for p := range prompts {
		for i := range imgs {
			ps = append(ps, prompts[p])
			is = append(is, imgs[i])
		}
	}
	sc := NewImageReward(m)
	sc.Batch = 4 // splits the six pairs unevenly
	got, err := sc.Score(context.Background(), ps, is)
	if err != nil {
		t.Fatal(err)
	}
	worst := 0.0
	for i := range got {
		worst = math.Max(worst, math.Abs(got[i]-float64(want[i])))
	}
	t.Logf("ImageReward rewards %v, max abs err %.2g", got, worst)
	if worst > 1e-4 {
		t.Fatalf("max abs err %.3g > 1e-4: got %v want %v", worst, got, want)
	}
}

// TestDINOFidelity embeds the fixture's raw images through DINO's own
// preprocessing (at the tiny model's 64 px) and compares the embeddings
// and the fidelity with the stored ones.
func TestDINOFidelity(t *testing.T) {
	e := testenv.Engine(t)
	fx := testenv.Fixtures(t)
	ref := fixtureFile(t, "dino.safetensors")
	cls, _, _ := ref.Float32("out/cls")
	fid, _, _ := ref.Float32("out/fidelity")
	for _, path := range []string{
		filepath.Join(fx, "rewards-tiny", "dino", "dino_vit_tiny16.pth"),
		filepath.Join(fx, "rewards-tiny", "dino", "hf"),
	} {
		m, err := dino.Load(e, path, dino.Options{})
		if err != nil {
			t.Fatal(err)
		}
		sc := NewDINO(m)
		emb, err := sc.Embedder.EmbedImages(context.Background(), fixtureImages(t))
		if err != nil {
			t.Fatal(err)
		}
		worst := 0.0
		for i, row := range emb {
			for k, v := range row {
				worst = math.Max(worst, math.Abs(float64(v-cls[i*len(row)+k])))
			}
		}
		got, err := sc.ScoreSubject(context.Background(), fixtureImages(t)[:1], fixtureImages(t)[1:])
		m.Release()
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: [CLS] max abs err %.2g, fidelity %.7f (fixture %.7f)", filepath.Base(path), worst, got[0], fid[0])
		if worst > 1e-4 || math.Abs(got[0]-float64(fid[0])) > 1e-5 {
			t.Fatalf("%s: [CLS] err %.3g, fidelity %v want %v", path, worst, got[0], fid[0])
		}
	}
}
