package gpu

import (
	"math"
	"math/rand"
	"testing"

	"github.com/instructbooth/instructbooth/gpu/ref"
)

var unaryOps = []struct {
	name string
	f    func(e *Engine, x *Tensor) *Tensor
}{
	{"silu", (*Engine).SiLU},
	{"gelu", (*Engine).GELU},
	{"gelu_tanh", (*Engine).GELUTanh},
	{"quick_gelu", (*Engine).QuickGELU},
	{"erf", (*Engine).Erf},
	{"exp", (*Engine).Exp},
}

// wide draws inputs uniformly from [-6, 6]: both sigmoid branches, every
// erf piece, the saturated tails.
func wide(r *rand.Rand, _ int, shape []int) []float64 {
	d := make([]float64, ref.Numel(shape))
	for i := range d {
		d[i] = r.Float64()*12 - 6
	}
	return d
}

func unaryCase(name string, f func(e *Engine, x *Tensor) *Tensor, shape []int) opCase {
	return opCase{
		name:    name,
		shapes:  [][]int{shape},
		gen:     wide,
		gpu:     func(e *Engine, in []*Tensor) *Tensor { return f(e, in[0]) },
		ref:     func(in []*ref.T) *ref.T { return ref.Unary(name, in[0]) },
		refBack: func(in []*ref.T, g *ref.T) []*ref.T { return []*ref.T{ref.UnaryBackward(name, in[0], g)} },
	}
}

func TestUnary(t *testing.T) {
	for _, op := range unaryOps {
		for _, s := range [][]int{{3, 37, 11}, {1001}, {1}} {
			t.Run(op.name+shapeStr(s), func(t *testing.T) { checkOp(t, unaryCase(op.name, op.f, s)) })
		}
	}
}

// TestErfAccuracy compares the shader's erf (and exact GELU) with Go's
// math.Erf on a dense grid, in absolute terms.
func TestErfAccuracy(t *testing.T) {
	e := engine(t)
	var xs []float32
	for i := -80000; i <= 80000; i++ {
		xs = append(xs, float32(i)*1e-4) // [-8, 8]
	}
	xs = append(xs, 1e-30, -1e-30, 0.9999999, 1.0000001, 3.9999998, 4, 30, -30, 1e30, -1e30)
	x := e.FromSlice(xs, len(xs))
	defer x.Release()
	erf, gelu := e.Erf(x), e.GELU(x)
	defer erf.Release()
	defer gelu.Release()
	got, gg := erf.MustRead(), gelu.MustRead()
	worst, worstG := 0.0, 0.0
	for i, v := range xs {
		d := math.Abs(float64(got[i]) - math.Erf(float64(v)))
		if d > worst {
			worst = d
		}
		if math.Abs(float64(v)) < 100 {
			w := ref.GELU(float64(v))
			if dg := math.Abs(float64(gg[i])-w) / (1 + math.Abs(w)); dg > worstG {
				worstG = dg
			}
		}
	}
	t.Logf("erf: max abs error %.3g; exact GELU: max error %.3g (relative above 1)", worst, worstG)
	if worst > 1e-6 || math.IsNaN(worst) {
		t.Errorf("erf max abs error %.3g > 1e-6", worst)
	}
	if worstG > 2e-6 || math.IsNaN(worstG) {
		t.Errorf("GELU max error %.3g > 2e-6", worstG)
	}
}

// TestUnaryExtremes: no NaN or Inf from overflow in the saturated tails
// (of the activations: exp overflows by definition).
func TestUnaryExtremes(t *testing.T) {
	e := engine(t)
	xs := []float32{-1e30, -1e10, -200, -90, -50, 50, 90, 200, 1e10, 1e30, 0}
	for _, op := range unaryOps {
		if op.name == "exp" {
			continue
		}
		x := e.FromSlice(xs, len(xs)).SetRequiresGrad(true)
		y := op.f(e, x)
		got := y.MustRead()
		if err := e.BackwardWith(y, e.Full(1, len(xs))); err != nil {
			t.Fatal(err)
		}
		dg := x.Grad.MustRead()
		for i, v := range xs {
			want := ref.Unary(op.name, ref.From([]float64{float64(v)}, 1)).Data[0]
			wantD := ref.UnaryBackward(op.name, ref.From([]float64{float64(v)}, 1), ref.From([]float64{1}, 1)).Data[0]
			if math.IsNaN(wantD) { // 0 * inf in the float64 formula far out
				wantD = 0
				if v > 0 {
					wantD = 1
				}
			}
			if g := float64(got[i]); !(math.Abs(g-want) <= 1e-6*math.Abs(want)+1e-6) {
				t.Errorf("%s(%g) = %g, want %g", op.name, v, g, want)
			}
			if g := float64(dg[i]); !(math.Abs(g-wantD) <= 1e-5*math.Abs(wantD)+1e-6) {
				t.Errorf("%s'(%g) = %g, want %g", op.name, v, g, wantD)
			}
		}
		y.Release()
		x.Release()
	}
}
