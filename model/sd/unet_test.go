package sd

import (
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/instructbooth/instructbooth/internal/testenv"

	"github.com/instructbooth/instructbooth/gpu"
	"github.com/instructbooth/instructbooth/model/nn"
	"github.com/instructbooth/instructbooth/model/safetensors"
)

func fixtures(t testing.TB) string {
	t.Helper()
	return testenv.Fixtures(t)
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

// refFile opens a reference file and returns a getter that uploads tensors.
func refFile(t *testing.T, e *gpu.Engine, name string) (*safetensors.File, func(key string) *gpu.Tensor) {
	t.Helper()
	return testenv.Ref(t, e, name)
}

// expectClose compares got with the reference key using the fixtures'
// suggested tolerance: max abs error <= rel * max(1, absmax).
func expectClose(t *testing.T, f *safetensors.File, key string, got *gpu.Tensor, rel float64) {
	t.Helper()
	want, info, err := f.Float32(key)
	if err != nil {
		t.Fatal(err)
	}
	g, err := got.Read()
	if err != nil {
		t.Fatal(err)
	}
	if len(g) != len(want) {
		t.Fatalf("%s: got %v, want shape %v", key, got.Shape(), info.Shape)
	}
	absmax, worst := 0.0, 0.0
	for i := range want {
		absmax = math.Max(absmax, math.Abs(float64(want[i])))
		d := math.Abs(float64(g[i] - want[i]))
		if math.IsNaN(d) {
			d = math.Inf(1)
		}
		worst = math.Max(worst, d)
	}
	if tol := rel * math.Max(1, absmax); worst > tol {
		t.Errorf("%s: max abs error %.3g > %.3g (absmax %.3g)", key, worst, tol, absmax)
	} else {
		t.Logf("%s: max abs error %.2g (absmax %.3g)", key, worst, absmax)
	}
}

func loadDiffusersUNet(t *testing.T, e *gpu.Engine, file string) *UNet {
	t.Helper()
	dir := filepath.Join(fixtures(t), "sd-tiny", "diffusers", "unet")
	f, err := safetensors.Open(filepath.Join(dir, file))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := nn.NewWeights(e)
	if _, err := w.Load(f, nn.Identity); err != nil {
		t.Fatal(err)
	}
	cfg, err := ReadUNetConfig(filepath.Join(dir, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	u, err := NewUNet(w, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// TestUNet_matchesReference runs the sd-tiny U-Net on the reference inputs
// and compares the noise prediction and every tapped block output.
func TestUNet_matchesReference(t *testing.T) {
	e := engine(t)
	u := loadDiffusersUNet(t, e, "diffusion_pytorch_model.safetensors")
	defer u.W.Release()
	f, get := refFile(t, e, "unet.safetensors")
	ts, _, _ := f.Int64("in/timesteps")
	t32 := e.FromSlice([]float32{float32(ts[0]), float32(ts[1])}, 2)
	x, ctx := get("in/latents"), get("in/encoder_hidden_states")
	taps := map[string]*gpu.Tensor{}
	u.Taps = func(name string, t *gpu.Tensor) { e.Outside(func() { taps[name] = e.Copy(t) }) }
	var out *gpu.Tensor
	e.NoGrad(func() { out = u.Forward(x, t32, ctx) })
	u.Taps = nil
	expectClose(t, f, "out/noise_pred", out, 1e-4)
	for _, name := range []string{"time_proj", "time_embedding", "conv_in", "down_blocks.0", "down_blocks.1", "down_blocks.2", "down_blocks.3", "mid_block", "up_blocks.0", "up_blocks.1", "up_blocks.2", "up_blocks.3", "conv_norm_out"} {
		tap, ok := taps[name]
		if !ok {
			t.Errorf("no activation tapped at %s", name)
			continue
		}
		expectClose(t, f, "act/"+name, tap, 1e-4)
	}
	// Non-integer timesteps and a non-square latent.
	e.NoGrad(func() { out = u.Forward(x, get("in/timesteps_float"), ctx) })
	expectClose(t, f, "out/noise_pred_float_t", out, 1e-4)
	ts2, _, _ := f.Int64("in/timesteps_16x24")
	cv, _, _ := f.Float32("in/encoder_hidden_states")
	ctx1 := e.FromSlice(cv[:len(cv)/2], 1, 77, ctx.Dim(2))
	e.NoGrad(func() {
		out = u.Forward(get("in/latents_16x24"), e.FromSlice([]float32{float32(ts2[0])}, 1), ctx1)
	})
	expectClose(t, f, "out/noise_pred_16x24", out, 1e-4)
}
