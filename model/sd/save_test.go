package sd

import (
	"path/filepath"
	"testing"

	"github.com/instructbooth/instructbooth/model/safetensors"
)

// TestSaveUNet_roundTrip writes the tiny U-Net (with one weight changed,
// as a fine-tune would) as a diffusers unet folder, loads it back and
// compares the configuration and the noise prediction bit for bit.
func TestSaveUNet_roundTrip(t *testing.T) {
	e := engine(t)
	p := load(t, e, tinyDiffusers(t), LoadOptions{Components: CompUNet})
	b := p.UNet.W.Get("conv_out.bias")
	v := b.MustRead()
	v[0] += 0.25
	b.Write(v)
	want := runTiny(t, e, p).unet
	dir := filepath.Join(t.TempDir(), "unet")
	if err := SaveUNet(dir, p.UNet, false, map[string]string{"steps": "7"}); err != nil {
		t.Fatal(err)
	}
	cfg, err := ReadUNetConfig(filepath.Join(dir, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	f, err := safetensors.Open(filepath.Join(dir, "diffusion_pytorch_model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if f.Metadata["steps"] != "7" {
		t.Errorf("metadata %v", f.Metadata)
	}
	u, err := LoadUNetFrom(e, f, cfg, LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer u.W.Release()
	c0, c1 := p.UNet.Cfg, u.Cfg
	if c1.CrossAttentionDim != c0.CrossAttentionDim || len(c1.Heads) != 4 || c1.Heads[1] != c0.Heads[1] || c1.NormEps != c0.NormEps ||
		!c1.FlipSinToCos || c1.UseLinearProjection != c0.UseLinearProjection || c1.DownHasAttn[3] || !c1.DownHasAttn[0] {
		t.Errorf("config read back %+v, saved %+v", c1, c0)
	}
	got := runTiny(t, e, &Pipeline{UNet: u}).unet
	if d := maxDiff(t, got, want); d != 0 {
		t.Errorf("reloaded U-Net differs by %g", d)
	}
}

// TestSaveSingleFile_matchesFixture writes the tiny pipeline as one LDM
// checkpoint: its keys and shapes are exactly those of the fixture's
// single file (written by diffusers' converter), and loading it back gives
// the same text, U-Net and VAE outputs bit for bit (f32) or the fixture's
// fp16-weight references (f16).
func TestSaveSingleFile_matchesFixture(t *testing.T) {
	e := engine(t)
	p := load(t, e, tinyDiffusers(t), LoadOptions{})
	want := runTiny(t, e, p)
	fix := openFixture(t, "single-file", "sd-tiny.safetensors")
	for _, f16 := range []bool{false, true} {
		path := filepath.Join(t.TempDir(), "model.safetensors")
		if err := SaveSingleFile(path, p, f16, nil); err != nil {
			t.Fatal(err)
		}
		f, err := safetensors.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		if len(f.Names()) != len(fix.Names()) {
			t.Errorf("f16 %v: %d tensors, the fixture has %d", f16, len(f.Names()), len(fix.Names()))
		}
		for _, n := range fix.Names() {
			wi, _ := fix.Info(n)
			gi, ok := f.Info(n)
			if !ok {
				t.Errorf("key %q missing", n)
				continue
			}
			wantType := safetensors.F32
			if f16 {
				wantType = wi.DType
			}
			if !equalShape(gi.Shape, wi.Shape) || gi.DType != wantType {
				t.Errorf("%s: %s %v, want %s %v", n, gi.DType, gi.Shape, wantType, wi.Shape)
			}
		}
		f.Close()
		back := load(t, e, path, LoadOptions{ConfigDir: tinyDiffusers(t)})
		got := runTiny(t, e, back)
		if f16 {
			expectFP16w(t, e, got)
			continue
		}
		if d := maxDiff(t, got.text, want.text) + maxDiff(t, got.unet, want.unet) + maxDiff(t, got.vae, want.vae); d != 0 {
			t.Errorf("reloaded single file differs by %g", d)
		}
	}
}
