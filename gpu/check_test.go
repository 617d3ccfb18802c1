package gpu

import (
	"errors"
	"fmt"
	"math"
	"math/rand"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/instructbooth/instructbooth/gpu/ref"
)

// The shared test engine: one device for the whole package.
var (
	testEng    *Engine
	testEngErr error
)

func TestMain(m *testing.M) {
	testEng, testEngErr = Open(Options{})
	if testEngErr == nil {
		fmt.Fprintf(os.Stderr, "gpu tests on %s\n", testEng.Info)
	}
	code := m.Run()
	if testEng != nil {
		testEng.Close()
	}
	os.Exit(code)
}

// engine returns the shared engine; it skips only when no adapter exists.
func engine(t testing.TB) *Engine {
	t.Helper()
	if errors.Is(testEngErr, ErrNoAdapter) {
		t.Skip("no GPU adapter: ", testEngErr)
	}
	if testEngErr != nil {
		t.Fatal(testEngErr)
	}
	return testEng
}

// seeded returns a generator whose seed is logged (IB_SEED overrides it).
func seeded(t testing.TB) (*rand.Rand, int64) {
	t.Helper()
	seed := time.Now().UnixNano()
	if s := os.Getenv("IB_SEED"); s != "" {
		seed, _ = strconv.ParseInt(s, 10, 64)
	}
	t.Logf("seed %d (rerun with IB_SEED=%d)", seed, seed)
	return rand.New(rand.NewSource(seed)), seed
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

// opCase describes one op for checkOp: the GPU op, its reference forward and
// backward, and the input shapes.
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

// checkOp runs c's forward and backward on the GPU and compares them with
// the reference, and checks the reference backward by central finite
// differences in float64.
func checkOp(t *testing.T, c opCase) {
	t.Helper()
	e := engine(t)
	r, seed := seeded(t)
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
	if !sameShape(out.Shape(), want.Shape) {
		t.Fatalf("%s (seed %d): shape %v, reference %v", c.name, seed, out.Shape(), want.Shape)
	}
	got, err := out.Read()
	if err != nil {
		t.Fatal(err)
	}
	compare(t, fmt.Sprintf("%s forward (seed %d)", c.name, seed), got, want.Data, c.atol, c.rtol)
	if c.refBack == nil {
		e.ResetTape()
		return
	}
	g := ref.From(randData(r, len(want.Data)), want.Shape...)
	if err := e.BackwardWith(out, e.FromSlice(f32s(g.Data), g.Shape...)); err != nil {
		t.Fatal(err)
	}
	wantG := c.refBack(ins, g)
	for i := range ins {
		if c.noGrad != nil && c.noGrad[i] {
			continue
		}
		if gins[i].Grad == nil {
			t.Fatalf("%s (seed %d): input %d got no gradient", c.name, seed, i)
		}
		compare(t, fmt.Sprintf("%s backward input %d (seed %d)", c.name, i, seed), gins[i].Grad.MustRead(), wantG[i].Data, c.atol, c.rtol)
	}
	out.Release()
	if !c.fdSkip {
		fdCheck(t, c, ins, g, wantG, r, seed)
	}
}

// fdCheck compares the reference backward with central differences of
// L(x) = sum(ref(x) * g) at up to 12 random elements of each input.
func fdCheck(t *testing.T, c opCase, ins []*ref.T, g *ref.T, grads []*ref.T, r *rand.Rand, seed int64) {
	t.Helper()
	const h = 1e-6
	for i, in := range ins {
		if c.noGrad != nil && c.noGrad[i] {
			continue
		}
		for k := 0; k < 12 && k < len(in.Data); k++ {
			j := r.Intn(len(in.Data))
			orig := in.Data[j]
			in.Data[j] = orig + h
			fp := ref.Dot(c.ref(ins), g)
			in.Data[j] = orig - h
			fm := ref.Dot(c.ref(ins), g)
			in.Data[j] = orig
			fd := (fp - fm) / (2 * h)
			an := grads[i].Data[j]
			if math.Abs(fd-an) > 1e-5+1e-4*math.Abs(fd) {
				t.Errorf("%s reference gradient (seed %d): input %d element %d: analytic %.8g, finite difference %.8g", c.name, seed, i, j, an, fd)
			}
		}
	}
}

func compare(t *testing.T, what string, got []float32, want []float64, atol, rtol float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", what, len(got), len(want))
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
		t.Errorf("%s: %d of %d values off; worst at %d: got %.7g want %.7g", what, bad, len(got), wi, got[wi], want[wi])
	}
}
