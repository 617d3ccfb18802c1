package sd

import (
	"path/filepath"
	"testing"

	"github.com/instructbooth/instructbooth/gpu"
	"github.com/instructbooth/instructbooth/model/nn"
	"github.com/instructbooth/instructbooth/model/safetensors"
)

// TestVAE_matchesReference encodes and decodes the reference images and
// latents, square and non-square.
func TestVAE_matchesReference(t *testing.T) {
	e := engine(t)
	f, err := safetensors.Open(filepath.Join(fixtures(t), "sd-tiny", "diffusers", "vae", "diffusion_pytorch_model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	w := nn.NewWeights(e)
	if _, err := w.Load(f, nn.Identity); err != nil {
		t.Fatal(err)
	}
	f.Close()
	defer w.Release()
	v, err := NewVAE(w)
	if err != nil {
		t.Fatal(err)
	}
	ref, get := refFile(t, e, "vae.safetensors")
	var mean, logvar, dec, dec2 *gpu.Tensor
	e.NoGrad(func() {
		mean, logvar = v.Encode(get("in/image"))
		dec = v.Decode(get("in/latent"))
		dec2 = v.Decode(get("in/latent_6x10"))
	})
	expectClose(t, ref, "out/mean", mean, 1e-4)
	expectClose(t, ref, "out/logvar", logvar, 1e-4)
	expectClose(t, ref, "out/decoded", dec, 1e-4)
	expectClose(t, ref, "out/decoded_6x10", dec2, 1e-4)
	// Sampled latents: mean + exp(logvar/2) * noise, then the SD scale.
	var lat *gpu.Tensor
	e.NoGrad(func() { lat = v.Latents(mean, logvar, get("in/sample_noise")) })
	want, _, _ := ref.Float32("out/latent_sample")
	got := lat.MustRead()
	for i := range want {
		if d := got[i] - ScalingFactor*want[i]; d > 1e-4 || d < -1e-4 {
			t.Fatalf("latent sample[%d] = %g, want %g", i, got[i], ScalingFactor*want[i])
		}
	}
}
