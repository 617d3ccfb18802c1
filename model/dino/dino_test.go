package dino

import (
	"math"
	"path/filepath"
	"testing"

	"github.com/instructbooth/instructbooth/internal/testenv"
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

// check compares got with want under max abs err <= tol(absmax).
func check(t *testing.T, key string, got, want []float32, tol func(absmax float64) float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", key, len(got), len(want))
	}
	absmax, worst := 0.0, 0.0
	for i := range want {
		absmax = math.Max(absmax, math.Abs(float64(want[i])))
		worst = math.Max(worst, math.Abs(float64(got[i]-want[i])))
	}
	if tl := tol(absmax); worst > tl || math.IsNaN(worst) {
		t.Errorf("%s: max abs error %g > %g", key, worst, tl)
	} else {
		t.Logf("%s: max abs error %.2g (absmax %.3g)", key, worst, absmax)
	}
}

func activation(absmax float64) float64 { return 1e-4 * math.Max(1, absmax) }
func cosineTol(float64) float64         { return 1e-5 }

// TestDINO_matchesReference runs both layouts at the three input sizes
// (64x64 stored table, 80x112 and 48x48 interpolated) and checks the
// tables used, the tokens, the final states, the embeddings and the
// fidelity cosines.
func TestDINO_matchesReference(t *testing.T) {
	e := testenv.Engine(t)
	ref, err := safetensors.Open(fixture(t, "ref/dino.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer ref.Close()
	get := func(k string) ([]float32, []int) {
		v, info, err := ref.Float32(k)
		if err != nil {
			t.Fatal(err)
		}
		return v, info.Shape
	}
	for _, c := range []struct {
		path, layout, prefix string
		eps                  float32
	}{
		{"dino/dino_vit_tiny16.pth", "dino", "out/", 1e-6},
		{"dino/dino_vit_tiny16.safetensors", "dino", "out/", 1e-6},
		{"dino/hf", "hf", "hf/", 1e-12},
	} {
		t.Run(c.path, func(t *testing.T) {
			m, err := Load(e, fixture(t, c.path), Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer m.Release()
			if m.Layout != c.layout || m.ViT.Cfg.Eps != c.eps || m.ViT.Cfg.Heads != 4 {
				t.Errorf("layout %s, config %+v", m.Layout, m.ViT.Cfg)
			}
			e.NoGrad(func() {
				s := e.Scope()
				defer s.Close()
				cls := map[string][]float32{}
				for _, size := range []string{"", "_80x112", "_48x48"} {
					px, shape := get("in/pixel_values" + size)
					out, err := m.ViT.Forward(e.FromSlice(px, shape...))
					if err != nil {
						t.Fatal(err)
					}
					last := out.Last.MustRead()
					if c.layout == "dino" {
						w, _ := get("act/pos_embed_used" + size)
						check(t, "act/pos_embed_used"+size, out.PosEmbed.MustRead(), w, activation)
						w, _ = get("act/tokens" + size)
						check(t, "act/tokens"+size, out.Tokens.MustRead(), w, activation)
					}
					w, _ := get(c.prefix + "last_hidden_state" + size)
					check(t, c.prefix+"last_hidden_state"+size, last, w, activation)
					emb, err := m.Embed(e.FromSlice(px, shape...))
					if err != nil {
						t.Fatal(err)
					}
					cls[size] = emb.MustRead()
					if c.layout == "dino" {
						w, _ := get("out/cls" + size)
						check(t, "out/cls"+size, cls[size], w, activation)
					}
				}
				d := m.ViT.Cfg.Width
				f, err := Cosine(cls[""][:d], cls[""][d:])
				if err != nil {
					t.Fatal(err)
				}
				w, _ := get(c.prefix + "fidelity")
				check(t, c.prefix+"fidelity", []float32{float32(f)}, w, cosineTol)
				if c.layout == "dino" {
					f, _ := Cosine(cls["_80x112"], cls["_48x48"])
					w, _ := get("out/fidelity_80x112_vs_48x48")
					check(t, "out/fidelity_80x112_vs_48x48", []float32{float32(f)}, w, cosineTol)
				}
			})
		})
	}
}

// TestDINO_hfWithDINOEps: the transformers layout run with DINO's eps is
// the original model (README: within 1e-5 abs).
func TestDINO_hfWithDINOEps(t *testing.T) {
	e := testenv.Engine(t)
	ref, err := safetensors.Open(fixture(t, "ref/dino.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer ref.Close()
	m, err := Load(e, fixture(t, "dino/hf"), Options{Eps: 1e-6})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Release()
	px, info, _ := ref.Float32("in/pixel_values_80x112")
	want, _, _ := ref.Float32("out/last_hidden_state_80x112")
	e.NoGrad(func() {
		s := e.Scope()
		defer s.Close()
		out, err := m.ViT.Forward(e.FromSlice(px, info.Shape...))
		if err != nil {
			t.Fatal(err)
		}
		check(t, "hf eps 1e-6 vs out/last_hidden_state_80x112", out.Last.MustRead(), want, func(float64) float64 { return 1e-5 })
	})
}

// TestDINO_gradient: the embedding is differentiable with respect to the
// pixels through the interpolated position table (a finite-difference
// check of one direction).
func TestDINO_gradient(t *testing.T) {
	e := testenv.Engine(t)
	m, err := Load(e, fixture(t, "dino/dino_vit_tiny16.pth"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Release()
	ref, err := safetensors.Open(fixture(t, "ref/dino.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer ref.Close()
	px, info, _ := ref.Float32("in/pixel_values_48x48")
	dir := make([]float32, len(px))
	for i := range dir {
		dir[i] = float32(math.Sin(float64(i) * 0.37))
	}
	// f(x) = sum(embedding * u) for a fixed u.
	u := make([]float32, m.ViT.Cfg.Width)
	for i := range u {
		u[i] = float32(math.Cos(float64(i)))
	}
	f := func(x []float32) float64 {
		var v float32
		e.NoGrad(func() {
			s := e.Scope()
			defer s.Close()
			emb, err := m.Embed(e.FromSlice(x, info.Shape...))
			if err != nil {
				t.Fatal(err)
			}
			v, _ = e.SumAll(e.Mul(emb, e.FromSlice(u, 1, len(u)))).Item()
		})
		return float64(v)
	}
	s := e.Scope()
	x := e.FromSlice(px, info.Shape...).SetRequiresGrad(true)
	emb, err := m.Embed(x)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Backward(e.SumAll(e.Mul(emb, e.FromSlice(u, 1, len(u))))); err != nil {
		t.Fatal(err)
	}
	g := x.Grad.MustRead()
	s.Close()
	x.Release()
	analytic := 0.0
	for i := range g {
		analytic += float64(g[i]) * float64(dir[i])
	}
	const h = 1e-2
	plus, minus := make([]float32, len(px)), make([]float32, len(px))
	for i := range px {
		plus[i], minus[i] = px[i]+h*dir[i], px[i]-h*dir[i]
	}
	fd := (f(plus) - f(minus)) / (2 * h)
	if math.Abs(fd-analytic) > 2e-2*math.Max(1, math.Abs(fd)) {
		t.Errorf("directional derivative: autograd %g, finite difference %g", analytic, fd)
	} else {
		t.Logf("directional derivative: autograd %g, finite difference %g", analytic, fd)
	}
}
