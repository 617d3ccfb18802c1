package generate

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
	"github.com/instructbooth/instructbooth/model/sched"
	"github.com/instructbooth/instructbooth/model/sd"
)

func fixtures(t testing.TB) string {
	t.Helper()
	return testenv.Fixtures(t)
}

var (
	testTiny *Components
)

func engine(t testing.TB) *gpu.Engine {
	t.Helper()
	return testenv.Engine(t)
}

func TestMain(m *testing.M) {
	code := m.Run()
	testenv.Close()
	os.Exit(code)
}

// tiny loads the sd-tiny diffusers folder once per test binary (a stand-in
// for the checkpoint loader: each component's fp32 weights under their
// diffusers keys).
func tiny(t testing.TB) Components {
	t.Helper()
	e := engine(t)
	if testTiny != nil {
		return *testTiny
	}
	dir := filepath.Join(fixtures(t), "sd-tiny", "diffusers")
	weights := func(file string) *nn.Weights {
		f, err := safetensors.Open(filepath.Join(dir, file))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		w := nn.NewWeights(e)
		if _, err := w.Load(f, nn.Identity); err != nil {
			t.Fatal(err)
		}
		return w
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	tok, err := clip.LoadHF(filepath.Join(dir, "tokenizer"))
	must(err)
	tcfg, err := clip.ReadTextConfig(filepath.Join(dir, "text_encoder", "config.json"))
	must(err)
	text, err := clip.NewTextModel(weights("text_encoder/model.safetensors"), tcfg)
	must(err)
	ucfg, err := sd.ReadUNetConfig(filepath.Join(dir, "unet", "config.json"))
	must(err)
	unet, err := sd.NewUNet(weights("unet/diffusion_pytorch_model.safetensors"), ucfg)
	must(err)
	vae, err := sd.NewVAE(weights("vae/diffusion_pytorch_model.safetensors"))
	must(err)
	scfg, err := sched.LoadConfig(filepath.Join(dir, "scheduler", "scheduler_config.json"))
	must(err)
	testTiny = &Components{Tokenizer: tok, Text: text, UNet: unet, VAE: vae, Schedule: sched.New(scfg), Name: "sd-tiny"}
	return *testTiny
}

// refFile opens a file of sd-tiny/ref.
func refFile(t *testing.T, name string) *safetensors.File {
	t.Helper()
	f, err := safetensors.Open(filepath.Join(fixtures(t), "sd-tiny", "ref", name))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func read(t *testing.T, f *safetensors.File, key string) ([]float32, []int) {
	t.Helper()
	v, info, err := f.Float32(key)
	if err != nil {
		t.Fatal(err)
	}
	return v, info.Shape
}

func upload(t *testing.T, e *gpu.Engine, f *safetensors.File, key string) *gpu.Tensor {
	t.Helper()
	v, shape := read(t, f, key)
	return e.FromSlice(v, shape...)
}

// expectClose checks max |got - want| <= rel * max(1, absmax(want)), the
// fixtures' suggested form, and logs the error.
func expectClose(t *testing.T, name string, got, want []float32, rel float64) float64 {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", name, len(got), len(want))
	}
	absmax, worst := 0.0, 0.0
	for i := range want {
		absmax = math.Max(absmax, math.Abs(float64(want[i])))
		d := math.Abs(float64(got[i]) - float64(want[i]))
		if math.IsNaN(d) {
			d = math.Inf(1)
		}
		worst = math.Max(worst, d)
	}
	if tol := rel * math.Max(1, absmax); worst > tol {
		t.Errorf("%s: max abs error %.3g > %.3g (absmax %.3g)", name, worst, tol, absmax)
	} else {
		t.Logf("%s: max abs error %.2g (tolerance %.2g, absmax %.3g)", name, worst, tol, absmax)
	}
	return worst
}
