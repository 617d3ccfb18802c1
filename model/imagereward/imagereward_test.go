package imagereward

import (
	"math"
	"path/filepath"
	"strings"
	"testing"

	"github.com/instructbooth/instructbooth/gpu"
	"github.com/instructbooth/instructbooth/internal/testenv"
	"github.com/instructbooth/instructbooth/model/bert"
	"github.com/instructbooth/instructbooth/model/safetensors"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testenv.Close()
	if code != 0 {
		panic(code)
	}
}

func fixture(t *testing.T, rel string) string {
	return filepath.Join(testenv.Fixtures(t), "rewards-tiny", rel)
}

func load(t *testing.T, e *gpu.Engine, file string) *Model {
	t.Helper()
	m, err := Load(e, fixture(t, file), Options{VocabPath: filepath.Join(testenv.Fixtures(t), "bert-vocab", "vocab.txt")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Release)
	return m
}

func openRef(t *testing.T, name string) *safetensors.File {
	t.Helper()
	f, err := safetensors.Open(fixture(t, "ref/"+name))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func upload(t *testing.T, e *gpu.Engine, f *safetensors.File, key string) *gpu.Tensor {
	t.Helper()
	v, info, err := f.Float32(key)
	if err != nil {
		t.Fatal(err)
	}
	return e.FromSlice(v, info.Shape...)
}

// check compares with max abs err <= tol(absmax).
func check(t *testing.T, f *safetensors.File, key string, got []float32, tol func(float64) float64) {
	t.Helper()
	want, info, err := f.Float32(key)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d %v", key, len(got), len(want), info.Shape)
	}
	absmax, worst := 0.0, 0.0
	for i := range want {
		absmax = math.Max(absmax, math.Abs(float64(want[i])))
		worst = math.Max(worst, math.Abs(float64(got[i]-want[i])))
	}
	if tl := tol(absmax); worst > tl || math.IsNaN(worst) {
		t.Errorf("%s: max abs error %g > %g", key, worst, tl)
	} else {
		t.Logf("%s: max abs error %.2g (absmax %.3g, tolerance %.2g)", key, worst, absmax, tl)
	}
}

func activation(absmax float64) float64 { return 1e-4 * math.Max(1, absmax) }
func absolute(float64) float64          { return 1e-4 }

// TestImageReward_matchesReference tokenizes the fixture's three prompts,
// scores all six (prompt, image) pairs in one batch from both checkpoint
// files, and checks ids, image embeddings, text states, features, raw and
// normalised rewards.
func TestImageReward_matchesReference(t *testing.T) {
	e := testenv.Engine(t)
	ref := openRef(t, "imagereward.safetensors")
	prompts := []string{
		"a photo of an astronaut riding a horse on mars",
		"A cute corgi wearing sunglasses, digital art, trending on ArtStation!",
		"an extremely detailed oil painting of a medieval castle on a hill at sunset, with dragons flying over the towers, knights in shining armor, villagers celebrating a harvest festival, and a river winding through the valley",
	}
	wantIDs, _, _ := ref.Int64("in/input_ids")
	wantMask, _, _ := ref.Int64("in/attention_mask")
	for _, file := range []string{"imagereward/ImageReward.safetensors", "imagereward/ImageReward.pt"} {
		t.Run(filepath.Ext(file), func(t *testing.T) {
			m := load(t, e, file)
			if m.ImageSize() != 64 || len(m.MLP) != 5 || m.MLP[4] != "mlp.layers.7" || m.ViT.Cfg.Heads != 4 || m.Text.Cfg.Heads != 4 {
				t.Errorf("size %d, head %v, config %+v %+v", m.ImageSize(), m.MLP, m.ViT.Cfg, m.Text.Cfg)
			}
			enc, err := m.Encode(prompts)
			if err != nil {
				t.Fatal(err)
			}
			for p := range prompts {
				for j := range enc.IDs[p] {
					if int64(enc.IDs[p][j]) != wantIDs[p*MaxLength+j] || int64(enc.Mask[p][j]) != wantMask[p*MaxLength+j] {
						t.Fatalf("prompt %d tokens differ at %d", p, j)
					}
				}
			}
			// Pairs row p*2+i = (prompt p, image i).
			var pairs bert.Encoded
			var imageOf []int
			for p := range prompts {
				for i := 0; i < 2; i++ {
					pairs.IDs = append(pairs.IDs, enc.IDs[p])
					pairs.Mask = append(pairs.Mask, enc.Mask[p])
					imageOf = append(imageOf, i)
				}
			}
			e.NoGrad(func() {
				s := e.Scope()
				defer s.Close()
				out, err := m.Forward(pairs, upload(t, e, ref, "in/pixel_values"), imageOf)
				if err != nil {
					t.Fatal(err)
				}
				check(t, ref, "out/image_embeds", out.ImageEmbeds.MustRead(), activation)
				check(t, ref, "out/text_last_hidden_state", out.Text.Last.MustRead(), activation)
				check(t, ref, "out/txt_features", out.TxtFeatures.MustRead(), activation)
				check(t, ref, "out/mlp_raw", out.MLPRaw.MustRead(), absolute)
				check(t, ref, "out/reward", out.Reward.MustRead(), absolute)
				// Score: one prompt against both images = row 0 of out/reward.
				r, err := m.Score(prompts[:1], upload(t, e, ref, "in/pixel_values"))
				if err != nil {
					t.Fatal(err)
				}
				all, _, _ := ref.Float32("out/reward")
				got := r.MustRead()
				for i := 0; i < 2; i++ {
					if d := math.Abs(float64(got[i] - all[i])); d > 1e-4 {
						t.Errorf("Score(prompt 0, image %d) = %v, want %v", i, got[i], all[i])
					}
				}
			})
		})
	}
}

// TestImageReward_gradient checks d reward / d pixel_values for prompt 0
// and image 0 against PyTorch's autograd, and the ReFL inputs' rewards.
func TestImageReward_gradient(t *testing.T) {
	e := testenv.Engine(t)
	ref := openRef(t, "imagereward_grad.safetensors")
	m := load(t, e, "imagereward/ImageReward.pt")
	prompt := "a photo of an astronaut riding a horse on mars"
	s := e.Scope()
	px := upload(t, e, ref, "in/pixel_values").SetRequiresGrad(true)
	r, err := m.Score([]string{prompt}, px)
	if err != nil {
		t.Fatal(err)
	}
	check(t, ref, "out/reward", r.MustRead(), absolute)
	if err := e.Backward(r); err != nil {
		t.Fatal(err)
	}
	check(t, ref, "grad/pixel_values", px.Grad.MustRead(), func(absmax float64) float64 { return 1e-3 * absmax })
	s.Close()
	px.Release()
	e.NoGrad(func() {
		s := e.Scope()
		defer s.Close()
		for _, k := range []string{"refl", "refl_aa"} {
			r, err := m.Score([]string{prompt}, upload(t, e, ref, k+"/pixel_values"))
			if err != nil {
				t.Fatal(err)
			}
			check(t, ref, k+"/reward", r.MustRead(), absolute)
		}
	})
}

// TestNormalize: the [0, 1] -> model scale map and its gradient 1/std.
func TestNormalize(t *testing.T) {
	e := testenv.Engine(t)
	s := e.Scope()
	defer s.Close()
	x := e.Full(0.5, 1, 3, 2, 2).SetRequiresGrad(true)
	y := Normalize(e, x)
	got := y.MustRead()
	for c := 0; c < 3; c++ {
		want := (0.5 - PixelMean[c]) / PixelStd[c]
		if math.Abs(float64(got[c*4]-want)) > 1e-6 {
			t.Errorf("channel %d: %v, want %v", c, got[c*4], want)
		}
	}
	if err := e.Backward(e.SumAll(y)); err != nil {
		t.Fatal(err)
	}
	g := x.Grad.MustRead()
	if math.Abs(float64(g[4]-1/PixelStd[1])) > 1e-5 {
		t.Errorf("gradient %v, want %v", g[4], 1/PixelStd[1])
	}
	x.Release()
}

func TestLoad_errors(t *testing.T) {
	e := testenv.Engine(t)
	// The DINO checkpoint is a ViT but not an ImageReward.
	if _, err := Load(e, fixture(t, "dino/dino_vit_tiny16.pth"), Options{}); err == nil || !strings.Contains(err.Error(), "dino_vit_tiny16.pth") {
		t.Errorf("DINO checkpoint: %v", err)
	}
	if _, err := Load(e, fixture(t, "imagereward/ImageReward.pt"), Options{VocabPath: "/nonexistent/vocab.txt"}); err == nil {
		t.Error("missing vocabulary accepted")
	}
	m := load(t, e, "imagereward/ImageReward.safetensors")
	e.NoGrad(func() {
		s := e.Scope()
		defer s.Close()
		if _, err := m.Score([]string{"a", "b"}, e.Zeros(3, 3, 64, 64)); err == nil {
			t.Error("2 prompts for 3 images accepted")
		}
		if _, err := m.Score([]string{"a"}, e.Zeros(1, 3, 32, 32)); err == nil {
			t.Error("32x32 pixels accepted")
		}
	})
}

// TestScore_releasesEverything: after a scoped Score (inference) and a
// scoped Score + Backward, live GPU memory is back where it started.
func TestScore_releasesEverything(t *testing.T) {
	e := testenv.Engine(t)
	m := load(t, e, "imagereward/ImageReward.safetensors")
	ref := openRef(t, "imagereward.safetensors")
	px, info, _ := ref.Float32("in/pixel_values")
	base := e.MemStats().LiveTotal
	e.NoGrad(func() {
		s := e.Scope()
		r, err := m.Score([]string{"a cat"}, e.FromSlice(px, info.Shape...))
		if err != nil {
			t.Fatal(err)
		}
		r.MustRead()
		s.Close()
	})
	if live := e.MemStats().LiveTotal; live != base {
		t.Errorf("inference left %d bytes live (%s)", live-base, e.MemStats())
	}
	s := e.Scope()
	x := e.FromSlice(px, info.Shape...).SetRequiresGrad(true)
	r, err := m.Score([]string{"a cat"}, x)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Backward(e.SumAll(r)); err != nil {
		t.Fatal(err)
	}
	s.Close()
	x.Release()
	if live := e.MemStats().LiveTotal; live != base {
		t.Errorf("training step left %d bytes live (%s)", live-base, e.MemStats())
	}
}
