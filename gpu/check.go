package gpu

import (
	"fmt"
	"math"
	"math/rand"

	"github.com/instructbooth/instructbooth/gpu/ref"
)

// opCase describes one op for checking: the GPU op, its reference forward
// and backward, and the input shapes. The tests (checkOp) and the self-check
// command (SelfCheck) both run cases through runCase.
type opCase struct {
	name   string
	shapes [][]int
	// noGrad[i] marks inputs that take no gradient (indices, masks).
	noGrad []bool
	// gen, if set, makes input i's values (default uniform in [-1, 1]).
	gen     func(r *rand.Rand, i int, shape []int) []float64
	gpu     func(e *Engine, in []*Tensor) *Tensor
	ref     func(in []*ref.T) *ref.T
	refBack func(in []*ref.T, g *ref.T) []*ref.T
	// Tolerances: |gpu - ref| <= atol + rtol*|ref| (defaults 1e-4, 1e-3).
	atol, rtol float64
	// fdSkip disables the finite-difference check (non-smooth ops get a
	// custom gen instead).
	fdSkip bool
}

func randData(r *rand.Rand, n int) []float64 {
	d := make([]float64, n)
	for i := range d {
		d[i] = r.Float64()*2 - 1
	}
	return d
}

func f32s(x []float64) []float32 {
	o := make([]float32, len(x))
	for i, v := range x {
		o[i] = float32(v)
	}
	return o
}

// runCase runs c's forward and backward on the GPU, compares them with the
// reference, and checks the reference backward by central finite
// differences in float64. It returns one message per mismatch; err is for
// failures that stop the check.
func runCase(e *Engine, c opCase, r *rand.Rand, seed int64) (problems []string, err error) {
	if c.atol == 0 {
		c.atol = 1e-4
	}
	if c.rtol == 0 {
		c.rtol = 1e-3
	}
	ins := make([]*ref.T, len(c.shapes))
	gins := make([]*Tensor, len(c.shapes))
	for i, s := range c.shapes {
		var d []float64
		if c.gen != nil {
			d = c.gen(r, i, s)
		}
		if d == nil {
			d = randData(r, ref.Numel(s))
		}
		ins[i] = ref.From(d, s...)
		gins[i] = e.FromSlice(f32s(d), s...)
		if c.noGrad == nil || !c.noGrad[i] {
			gins[i].SetRequiresGrad(true)
		}
	}
	defer func() {
		for _, g := range gins {
			g.Release()
		}
	}()
	want := c.ref(ins)
	out := c.gpu(e, gins)
	defer out.Release()
	if !sameShape(out.Shape(), want.Shape) {
		return nil, fmt.Errorf("%s (seed %d): shape %v, reference %v", c.name, seed, out.Shape(), want.Shape)
	}
	got, err := out.Read()
	if err != nil {
		return nil, err
	}
	add := func(s string) {
		if s != "" {
			problems = append(problems, s)
		}
	}
	add(compareMsg(fmt.Sprintf("%s forward (seed %d)", c.name, seed), got, want.Data, c.atol, c.rtol))
	if c.refBack == nil {
		e.ResetTape()
		return problems, nil
	}
	g := ref.From(randData(r, len(want.Data)), want.Shape...)
	if err := e.BackwardWith(out, e.FromSlice(f32s(g.Data), g.Shape...)); err != nil {
		return problems, err
	}
	wantG := c.refBack(ins, g)
	for i := range ins {
		if c.noGrad != nil && c.noGrad[i] {
			continue
		}
		if gins[i].Grad == nil {
			return problems, fmt.Errorf("%s (seed %d): input %d got no gradient", c.name, seed, i)
		}
		gg, err := gins[i].Grad.Read()
		if err != nil {
			return problems, err
		}
		add(compareMsg(fmt.Sprintf("%s backward input %d (seed %d)", c.name, i, seed), gg, wantG[i].Data, c.atol, c.rtol))
	}
	if !c.fdSkip {
		problems = append(problems, fdCheck(c, ins, g, wantG, r, seed)...)
	}
	return problems, nil
}

// fdCheck compares the reference backward with central differences of
// L(x) = sum(ref(x) * g) at up to 12 random elements of each input.
func fdCheck(c opCase, ins []*ref.T, g *ref.T, grads []*ref.T, r *rand.Rand, seed int64) (problems []string) {
	const h = 1e-6
	for i, in := range ins {
		if c.noGrad != nil && c.noGrad[i] {
			continue
		}
		for k := 0; k < 12 && k < len(in.Data); k++ {
			j := r.Intn(len(in.Data))
			orig := in.Data[j]
			in.Data[j] = orig + h
			fp := c.ref(ins)
			in.Data[j] = orig - h
			fm := c.ref(ins)
			in.Data[j] = orig
			// Difference elementwise before the dot product: outputs the
			// perturbation does not reach cancel exactly, so large tensors
			// do not drown the derivative in rounding error.
			fd := 0.0
			for k := range fp.Data {
				fd += (fp.Data[k] - fm.Data[k]) * g.Data[k]
			}
			fd /= 2 * h
			an := grads[i].Data[j]
			if math.Abs(fd-an) > 1e-5+1e-4*math.Abs(fd) {
				problems = append(problems, fmt.Sprintf("%s reference gradient (seed %d): input %d element %d: analytic %.8g, finite difference %.8g", c.name, seed, i, j, an, fd))
			}
		}
	}
	return problems
}

// compareMsg returns "" when every |got-want| <= atol + rtol*|want|, else a
// description of the mismatch.
func compareMsg(what string, got []float32, want []float64, atol, rtol float64) string {
	if len(got) != len(want) {
		return fmt.Sprintf("%s: %d values, want %d", what, len(got), len(want))
	}
	bad, worst, wi := 0, 0.0, 0
	for i := range got {
		d := math.Abs(float64(got[i]) - want[i])
		lim := atol + rtol*math.Abs(want[i])
		if !(d <= lim) {
			bad++
		}
		if q := d / lim; q > worst || math.IsNaN(d) {
			worst, wi = q, i
		}
	}
	if bad > 0 {
		return fmt.Sprintf("%s: %d of %d values off; worst at %d: got %.7g want %.7g", what, bad, len(got), wi, got[wi], want[wi])
	}
	return ""
}
