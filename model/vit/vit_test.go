package vit

import (
	"math"
	"path/filepath"
	"strings"
	"testing"

	"github.com/instructbooth/instructbooth/gpu"
	"github.com/instructbooth/instructbooth/internal/testenv"
	"github.com/instructbooth/instructbooth/model/safetensors"
	"github.com/instructbooth/instructbooth/model/torchpt"
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

// compare checks got against a fixture tensor with the README's activation
// tolerance, max abs err <= 1e-4 * max(1, absmax).
func compare(t *testing.T, ref *safetensors.File, key string, got *gpu.Tensor) {
	t.Helper()
	want, info, err := ref.Float32(key)
	if err != nil {
		t.Fatal(err)
	}
	g := got.MustRead()
	if len(g) != len(want) {
		t.Fatalf("%s: got %v, want %v", key, got.Shape(), info.Shape)
	}
	absmax, worst := 0.0, 0.0
	for i := range want {
		absmax = math.Max(absmax, math.Abs(float64(want[i])))
		worst = math.Max(worst, math.Abs(float64(g[i]-want[i])))
	}
	if tol := 1e-4 * math.Max(1, absmax); worst > tol || math.IsNaN(worst) {
		t.Errorf("%s: max abs error %g > %g", key, worst, tol)
	} else {
		t.Logf("%s: max abs error %.2g (absmax %.3g)", key, worst, absmax)
	}
}

// blipTable takes the ImageReward checkpoint's visual encoder.
func blipTable(k string) (Target, bool) {
	rest, ok := strings.CutPrefix(k, "blip.visual_encoder.")
	return Target{Key: rest}, ok
}

// TestBLIPViT_matchesReference runs ImageReward's visual encoder (from the
// .safetensors and the .pt) on the fixture pixels and checks every stored
// activation.
func TestBLIPViT_matchesReference(t *testing.T) {
	e := testenv.Engine(t)
	ref, err := safetensors.Open(fixture(t, "ref/imagereward.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer ref.Close()
	px, pi, err := ref.Float32("in/pixel_values")
	if err != nil {
		t.Fatal(err)
	}
	for _, file := range []string{"imagereward/ImageReward.safetensors", "imagereward/ImageReward.pt"} {
		t.Run(filepath.Ext(file), func(t *testing.T) {
			ck, err := torchpt.OpenCheckpoint(fixture(t, file))
			if err != nil {
				t.Fatal(err)
			}
			defer ck.Close()
			w, err := LoadWeights(e, ck, file, blipTable)
			if err != nil {
				t.Fatal(err)
			}
			defer w.Release()
			m, err := New(w, Config{Heads: 4})
			if err != nil {
				t.Fatal(err)
			}
			defer m.Release()
			if c := m.Cfg; c.Width != 32 || c.Depth != 2 || c.MLP != 128 || c.Patch != 16 || c.Grid != 4 || !c.QKVBias || c.Eps != 1e-6 {
				t.Errorf("inferred config %+v", c)
			}
			m.Taps = true
			var out *Output
			e.NoGrad(func() {
				s := e.Scope()
				defer s.Close()
				out, err = m.Forward(e.FromSlice(px, pi.Shape...))
				if err != nil {
					t.Fatal(err)
				}
				compare(t, ref, "act/vit_patch_embed", out.PatchEmbed)
				compare(t, ref, "act/vit_tokens", out.Tokens)
				compare(t, ref, "act/vit_block0", out.Blocks[0])
				compare(t, ref, "act/vit_last_block_prenorm", out.Blocks[1])
				compare(t, ref, "out/image_embeds", out.Last)
				// BLIP does not interpolate: another size is an error.
				if _, err := m.Forward(e.Zeros(1, 3, 48, 48)); err == nil || !strings.Contains(err.Error(), "takes 64x64") {
					t.Errorf("48x48 input: %v", err)
				}
				if _, err := m.Forward(e.Zeros(1, 1, 64, 64)); err == nil {
					t.Errorf("1-channel input accepted")
				}
			})
		})
	}
}

// TestCubicWeights: rows sum to one, and the identity scale reproduces the
// input (scale factor exactly 1 gives integer source positions).
func TestCubicWeights(t *testing.T) {
	m := cubicWeights(4, 5, 5.1/4)
	for o := 0; o < 5; o++ {
		s := 0.0
		for i := 0; i < 4; i++ {
			s += m[o*4+i]
		}
		if math.Abs(s-1) > 1e-12 {
			t.Errorf("row %d sums to %v", o, s)
		}
	}
	id := cubicWeights(4, 4, 1)
	for o := 0; o < 4; o++ {
		for i := 0; i < 4; i++ {
			want := 0.0
			if i == o {
				want = 1
			}
			if math.Abs(id[o*4+i]-want) > 1e-12 {
				t.Errorf("identity [%d,%d] = %v", o, i, id[o*4+i])
			}
		}
	}
}

func TestLoadWeights_errors(t *testing.T) {
	e := testenv.Engine(t)
	ck, err := torchpt.OpenCheckpoint(fixture(t, "dino/hf/model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer ck.Close()
	// Dropping the value projections leaves qkv incomplete.
	noValue := func(k string) (Target, bool) {
		if strings.Contains(k, ".value.") {
			return Target{}, false
		}
		return HFTable(k)
	}
	if _, err := LoadWeights(e, ck, "hf", noValue); err == nil || !strings.Contains(err.Error(), "blocks.0.attn.qkv.bias (part 2 of 3)") {
		t.Errorf("incomplete qkv: %v", err)
	}
	// Two keys onto one target.
	clash := func(k string) (Target, bool) {
		if strings.HasSuffix(k, "layernorm.weight") || strings.HasSuffix(k, "layernorm.bias") {
			return Target{Key: "norm.weight"}, true
		}
		return HFTable(k)
	}
	if _, err := LoadWeights(e, ck, "hf", clash); err == nil || !strings.Contains(err.Error(), "both convert to") {
		t.Errorf("clash: %v", err)
	}
	// A checkpoint without the blocks is not a ViT.
	w, err := LoadWeights(e, ck, "hf", func(k string) (Target, bool) {
		t, ok := HFTable(k)
		return t, ok && !strings.HasPrefix(t.Key, "blocks.1.mlp")
	})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Release()
	if _, err := New(w, Config{Heads: 4}); err == nil || !strings.Contains(err.Error(), "blocks.1.mlp.fc1.weight") {
		t.Errorf("missing mlp: %v", err)
	}
	if _, err := New(w, Config{Heads: 5}); err == nil {
		t.Errorf("5 heads of width 32 accepted")
	}
}
