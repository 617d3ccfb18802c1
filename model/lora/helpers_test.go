package lora

import (
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/instructbooth/instructbooth/internal/testenv"

	"github.com/instructbooth/instructbooth/gpu"
	"github.com/instructbooth/instructbooth/model/clip"
	"github.com/instructbooth/instructbooth/model/nn"
	"github.com/instructbooth/instructbooth/model/safetensors"
	"github.com/instructbooth/instructbooth/model/sd"
)

func fixtures(t testing.TB) string {
	t.Helper()
	return filepath.Join(testenv.Fixtures(t), "sd-tiny")
}

func loraFile(t testing.TB, name string) string {
	return filepath.Join(fixtures(t), "lora", name)
}

func engine(t testing.TB) *gpu.Engine {
	t.Helper()
	return testenv.Engine(t)
}

func TestMain(m *testing.M) {
	code := m.Run()
	testenv.Close()
	os.Exit(code)
}

// loadUNet loads the sd-tiny diffusers U-Net (frozen weights); released at
// the end of the test.
func loadUNet(t *testing.T, e *gpu.Engine) *sd.UNet {
	t.Helper()
	return loadTiny(t, e, sd.CompUNet).UNet
}

// loadTextModel loads the sd-tiny CLIP text encoder and returns it with the
// weights' root (the view holding "text_model.*"); released at the end of
// the test.
func loadTextModel(t *testing.T, e *gpu.Engine) (*clip.TextModel, *nn.Weights) {
	t.Helper()
	p := loadTiny(t, e, sd.CompText)
	return p.Text, p.Text.W.Root()
}

func loadTiny(t *testing.T, e *gpu.Engine, c sd.Component) *sd.Pipeline {
	t.Helper()
	p, err := sd.Load(e, filepath.Join(fixtures(t), "diffusers"), sd.LoadOptions{Components: c})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Release)
	return p
}

// refFile opens a reference file of sd-tiny/ref and returns a getter that
// uploads its float tensors.
func refFile(t *testing.T, e *gpu.Engine, name string) (*safetensors.File, func(key string) *gpu.Tensor) {
	t.Helper()
	return testenv.Ref(t, e, name)
}

// timesteps reads an int64 timestep tensor as float32 on the GPU.
func timesteps(t *testing.T, e *gpu.Engine, f *safetensors.File, key string) *gpu.Tensor {
	t.Helper()
	ts, info, err := f.Int64(key)
	if err != nil {
		t.Fatal(err)
	}
	v := make([]float32, len(ts))
	for i, x := range ts {
		v[i] = float32(x)
	}
	return e.FromSlice(v, info.Shape...)
}

// maxErr returns max |got - want| and max |want| (NaN counts as +Inf).
func maxErr(got, want []float32) (worst, absmax float64) {
	for i := range want {
		absmax = math.Max(absmax, math.Abs(float64(want[i])))
		d := math.Abs(float64(got[i] - want[i]))
		if math.IsNaN(d) {
			d = math.Inf(1)
		}
		worst = math.Max(worst, d)
	}
	return worst, absmax
}

// expectClose compares got with the reference key: max abs error <= rel *
// max(floor, absmax). The README's output tolerance is rel 1e-4, floor 1;
// its gradient tolerance rel 1e-3, floor 0.
func expectClose(t *testing.T, f *safetensors.File, key string, got *gpu.Tensor, rel, floor float64) {
	t.Helper()
	want, info, err := f.Float32(key)
	if err != nil {
		t.Fatal(err)
	}
	if got == nil {
		t.Errorf("%s: no tensor (no gradient reached it)", key)
		return
	}
	g, err := got.Read()
	if err != nil {
		t.Fatal(err)
	}
	if len(g) != len(want) {
		t.Fatalf("%s: got %v, want shape %v", key, got.Shape(), info.Shape)
	}
	worst, absmax := maxErr(g, want)
	if tol := rel * math.Max(floor, absmax); worst > tol {
		t.Errorf("%s: max abs error %.3g > %.3g (absmax %.3g)", key, worst, tol, absmax)
	} else {
		t.Logf("%s: max abs error %.2g = %.2g rel (absmax %.3g)", key, worst, worst/absmax, absmax)
	}
}

// sameTensor fails unless a and b hold bit-identical values of one shape.
func sameTensor(t *testing.T, what string, a, b *gpu.Tensor) {
	t.Helper()
	if !shapeEq(a.Shape(), b.Shape()) {
		t.Errorf("%s: shapes %v and %v", what, a.Shape(), b.Shape())
		return
	}
	av, bv := a.MustRead(), b.MustRead()
	for i := range av {
		if math.Float32bits(av[i]) != math.Float32bits(bv[i]) {
			t.Errorf("%s: element %d: %v != %v", what, i, av[i], bv[i])
			return
		}
	}
}

func shapeEq(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
