package metrics

import (
	"context"
	"encoding/json"
	"errors"
	"image"
	"image/color"
	"math"
	"path/filepath"
	"testing"

	"github.com/instructbooth/instructbooth/internal/testenv"
	"github.com/instructbooth/instructbooth/model/clip"
	"github.com/instructbooth/instructbooth/model/safetensors"
)

func TestSummarize(t *testing.T) {
	s := Summarize([]float64{1, 2, 3, 4})
	// sample sd = sqrt(5/3); se = sd / 2
	if s.N != 4 || s.Mean != 2.5 || math.Abs(s.StdErr-math.Sqrt(5.0/3)/2) > 1e-15 {
		t.Errorf("Summarize(1..4) = %+v", s)
	}
	if s := Summarize([]float64{0.7}); s.Mean != 0.7 || s.StdErr != 0 || s.N != 1 {
		t.Errorf("one value: %+v", s)
	}
	if s := Summarize(nil); !math.IsNaN(s.Mean) || s.N != 0 {
		t.Errorf("no values: %+v", s)
	}
	if got := (Summary{Mean: 0.30123, StdErr: 0.00412}).String(); got != "0.3012 ± 0.0041" {
		t.Errorf("String = %q", got)
	}
}

func TestByKey(t *testing.T) {
	g := ByKey([]string{"b", "a", "b", "a", "c"}, []float64{1, 10, 3, 20, 5})
	want := []struct {
		k    string
		mean float64
		n    int
	}{{"b", 2, 2}, {"a", 15, 2}, {"c", 5, 1}}
	if len(g) != len(want) {
		t.Fatalf("%d groups", len(g))
	}
	for i, w := range want {
		if g[i].Key != w.k || g[i].Mean != w.mean || g[i].N != w.n {
			t.Errorf("group %d: %+v, want %+v", i, g[i], w)
		}
	}
	if math.Abs(g[0].StdErr-1) > 1e-15 { // values 1, 3: sd sqrt(2), se 1
		t.Errorf("group b stderr %g", g[0].StdErr)
	}
}

func TestCosineAndFidelity(t *testing.T) {
	if c := Cosine([]float32{1, 0}, []float32{1, 1}); math.Abs(c-1/math.Sqrt2) > 1e-15 {
		t.Errorf("cosine %g", c)
	}
	if c := Cosine([]float32{0, 0}, []float32{1, 1}); c != 0 {
		t.Errorf("zero vector: %g", c)
	}
	refs := [][]float32{{1, 0}, {0, 2}}
	gen := [][]float32{{3, 0}, {1, 1}, {-1, 0}}
	f, err := Fidelity(refs, gen)
	if err != nil {
		t.Fatal(err)
	}
	want := []float64{0.5, 1 / math.Sqrt2, -0.5}
	for i := range want {
		if math.Abs(f[i]-want[i]) > 1e-15 {
			t.Errorf("fidelity %d = %g, want %g", i, f[i], want[i])
		}
	}
	if _, err := Fidelity(nil, gen); err == nil {
		t.Error("no references: no error")
	}
	if _, err := Fidelity([][]float32{{1, 2, 3}}, gen); err == nil {
		t.Error("size mismatch: no error")
	}
}

// fakeEmbedder returns fixed rows keyed by the image's width.
type fakeEmbedder map[int][]float32

func (f fakeEmbedder) EmbedImages(ctx context.Context, imgs []image.Image) ([][]float32, error) {
	var out [][]float32
	for _, im := range imgs {
		out = append(out, f[im.Bounds().Dx()])
	}
	return out, ctx.Err()
}

func fixtureFile(t *testing.T, name string) *safetensors.File {
	t.Helper()
	f, err := safetensors.Open(filepath.Join(testenv.Fixtures(t), "rewards-tiny", "ref", name))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// TestEmbeddingFidelity_dinoFixture feeds the stored DINO [CLS] vectors
// through the SubjectScorer and compares with the stored fidelity.
func TestEmbeddingFidelity_dinoFixture(t *testing.T) {
	f := fixtureFile(t, "dino.safetensors")
	cls, _, err := f.Float32("out/cls")
	if err != nil {
		t.Fatal(err)
	}
	want, _, err := f.Float32("out/fidelity")
	if err != nil {
		t.Fatal(err)
	}
	emb := fakeEmbedder{1: cls[:32], 2: cls[32:]}
	sc := &EmbeddingFidelity{Label: "dino", Embedder: emb}
	img := func(w int) image.Image { return image.NewGray(image.Rect(0, 0, w, 1)) }
	got, err := sc.ScoreSubject(context.Background(), []image.Image{img(1)}, []image.Image{img(2), img(1)})
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(got[0]-float64(want[0])) > 1e-5 || math.Abs(got[1]-1) > 1e-12 {
		t.Errorf("fidelity %v, want [%g 1]", got, want[0])
	}
	t.Logf("DINO fidelity %.7f, fixture %.7f", got[0], want[0])
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := sc.ScoreSubject(ctx, []image.Image{img(1)}, []image.Image{img(2)}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
}

func fixtureImages(t *testing.T) []image.Image {
	f := fixtureFile(t, "images.safetensors")
	var out []image.Image
	for _, key := range []string{"image0_u8", "image1_u8"} {
		v, info, err := f.Int64(key)
		if err != nil {
			t.Fatal(err)
		}
		h, w := info.Shape[1], info.Shape[2]
		img := image.NewNRGBA(image.Rect(0, 0, w, h))
		for y := 0; y < h; y++ {
			for x := 0; x < w; x++ {
				img.SetNRGBA(x, y, color.NRGBA{uint8(v[y*w+x]), uint8(v[h*w+y*w+x]), uint8(v[2*h*w+y*w+x]), 255})
			}
		}
		out = append(out, img)
	}
	return out
}

// TestCLIPScorers scores the fixture's images and prompts through the
// Scorer interface and compares with the stored CLIP-T cosines and
// PickScore logits; CLIP-I fidelity with the stored image embeddings.
func TestCLIPScorers(t *testing.T) {
	e := testenv.Engine(t)
	fx := testenv.Fixtures(t)
	m, err := clip.LoadModel(e, filepath.Join(fx, "rewards-tiny", "clip"), clip.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Release()
	tok, err := clip.LoadHF(filepath.Join(fx, "sd-tiny", "diffusers", "tokenizer"))
	if err != nil {
		t.Fatal(err)
	}
	ref := fixtureFile(t, "clip.safetensors")
	var prompts []string
	if err := json.Unmarshal([]byte(ref.Metadata["prompts"]), &prompts); err != nil {
		t.Fatal(err)
	}
	imgs := fixtureImages(t)
	// All six pairs, [prompt, image] order, with a batch size that splits
	// them unevenly.
	var ps []string
	var is []image.Image
	for p := range prompts {
		for i := range imgs {
			ps = append(ps, prompts[p])
			is = append(is, imgs[i])
		}
	}
	cos, _, _ := ref.Float32("out/cosine")
	logits, _, _ := ref.Float32("out/logits_per_text")
	for _, c := range []struct {
		sc   *CLIPScorer
		want []float32
		tol  float64
	}{{NewCLIPT(m, tok), cos, 1e-5}, {NewPickScore(m, tok), logits, 1e-3}} {
		c.sc.Batch = 4
		got, err := c.sc.Score(context.Background(), ps, is)
		if err != nil {
			t.Fatal(err)
		}
		worst := 0.0
		for i := range got {
			worst = math.Max(worst, math.Abs(got[i]-float64(c.want[i])))
		}
		if worst > c.tol {
			t.Errorf("%s: max abs error %g > %g (%v vs %v)", c.sc.Name(), worst, c.tol, got, c.want)
		} else {
			t.Logf("%s: max abs error %.2g", c.sc.Name(), worst)
		}
		if c.sc.Scaled {
			probs, _, _ := ref.Float32("out/pickscore_probs")
			for p := range prompts {
				pr := PreferenceProbs(got[2*p : 2*p+2])
				for i := range pr {
					if d := math.Abs(pr[i] - float64(probs[2*p+i])); d > 1e-5 {
						t.Errorf("pickscore prob [%d,%d] %g, want %g", p, i, pr[i], probs[2*p+i])
					}
				}
			}
		}
	}
	// CLIP-I: image 0 against references {image 1} is the cosine of the
	// stored (normalised) image embeddings.
	iv, _, _ := ref.Float32("out/image_embeds")
	want := clip.Dot(iv[:16], iv[16:])
	ci := &EmbeddingFidelity{Label: "clip-i", Embedder: &CLIPImageEmbedder{Model: m}}
	got, err := ci.ScoreSubject(context.Background(), imgs[1:], imgs[:1])
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(got[0]-want) > 1e-5 {
		t.Errorf("clip-i %g, want %g", got[0], want)
	}
	if _, err := NewCLIPT(m, tok).Score(context.Background(), ps[:2], is[:1]); err == nil {
		t.Error("mismatched lengths: no error")
	}
}
