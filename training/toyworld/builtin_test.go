package toyworld

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/instructbooth/instructbooth/internal/testenv"
	"github.com/instructbooth/instructbooth/model/generate"
	"github.com/instructbooth/instructbooth/model/sd"
)

// TestBuiltinModel: the embedded model is written into the cache folder
// once (a second call reuses the folder, an incomplete copy is replaced),
// loads with sd.Load as a pixel-codec SD model and draws a 32x32 image.
func TestBuiltinModel(t *testing.T) {
	e := testenv.Engine(t)
	cache := t.TempDir()
	dir, err := BuiltinModel(cache)
	if err != nil {
		t.Fatal(err)
	}
	again, err := BuiltinModel(cache)
	if err != nil || again != dir {
		t.Fatalf("second call: %q, %v; want %q", again, err, dir)
	}
	if err := os.Remove(filepath.Join(dir, ".complete")); err != nil {
		t.Fatal(err)
	}
	os.Remove(filepath.Join(dir, "unet", "diffusion_pytorch_model.safetensors"))
	if dir, err = BuiltinModel(cache); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "unet", "diffusion_pytorch_model.safetensors")); err != nil {
		t.Fatalf("an incomplete copy was not replaced: %v", err)
	}
	p, err := sd.Load(e, dir, sd.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Release()
	if p.VAE.Patch != 4 || p.VAE.Factor() != 4 || !(p.VAE.Scale > 1) {
		t.Errorf("VAE: patch %d, factor %d, scale %g; want the 4x4 pixel codec", p.VAE.Patch, p.VAE.Factor(), p.VAE.Scale)
	}
	c := generate.Components{Tokenizer: p.Tokenizer, Text: p.Text, UNet: p.UNet, VAE: p.VAE, Schedule: p.Schedule}
	if m := c.SizeMultiple(); m != 8 {
		t.Errorf("size multiple %d, want 8", m)
	}
	res, err := generate.Generate(context.Background(), c, generate.Params{Prompt: "a red ball on the grass", Steps: 2, Width: 32, Height: 32}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if b := res.Images[0].RGB.Bounds(); b.Dx() != 32 || b.Dy() != 32 {
		t.Errorf("image %v, want 32x32", b)
	}
	if _, err := generate.Generate(context.Background(), c, generate.Params{Prompt: "x", Steps: 1, Width: 36, Height: 36}, nil); err == nil {
		t.Error("a 36x36 image was accepted")
	}
}
