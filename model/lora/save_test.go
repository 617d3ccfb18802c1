package lora

import (
	"path/filepath"
	"testing"

	"github.com/instructbooth/instructbooth/model/nn"
	"github.com/instructbooth/instructbooth/model/safetensors"
)

// sameAdapters fails unless a and b have the same modules with identical
// tensors and scales.
func sameAdapters(t *testing.T, what string, a, b nn.Adapters) {
	t.Helper()
	if len(a) != len(b) {
		t.Fatalf("%s: %d adapters vs %d", what, len(a), len(b))
	}
	for k, x := range a {
		y := b[k]
		if y == nil {
			t.Fatalf("%s: %s missing after the round trip", what, k)
		}
		if x.Scale != y.Scale {
			t.Errorf("%s: %s: scale %v vs %v", what, k, x.Scale, y.Scale)
		}
		sameTensor(t, what+" "+k+" down", x.Down, y.Down)
		sameTensor(t, what+" "+k+" up", x.Up, y.Up)
	}
}

// TestSave_roundTrip saves the fixture's adapters in every layout, loads
// them back, and checks identical tensors and scales, the metadata, and
// that the kohya export reproduces the fixture's output.
func TestSave_roundTrip(t *testing.T) {
	e := engine(t)
	u := loadUNet(t, e)
	ref, _ := refFile(t, e, "unet_lora.safetensors")
	tg := Targets{UNet: u.W}
	meta := Meta{BaseModelHash: "0123abcd", Identifier: "sks", ClassNoun: "dog", Description: "a test dog", Steps: 400}
	for _, c := range []struct {
		src    string
		format Format
		key    string
	}{
		{"lora_kohya.safetensors", Kohya, "out/noise_pred_lora_kohya"},
		{"lora_diffusers.safetensors", Diffusers, "out/noise_pred_lora_diffusers"},
		{"lora_diffusers.safetensors", PEFT, "out/noise_pred_lora_diffusers"},
	} {
		src, err := Load(loraFile(t, c.src), tg)
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(t.TempDir(), "out.safetensors")
		if err := Save(p, src.Set, c.format, meta.Map()); err != nil {
			t.Fatal(err)
		}
		back, err := Load(p, tg)
		if err != nil {
			t.Fatal(err)
		}
		if back.Format != c.format {
			t.Errorf("%s: saved file reads as %s", c.format, back.Format)
		}
		sameAdapters(t, string(c.format), src.UNet, back.UNet)
		if got := ParseMeta(back.Metadata); got != meta {
			t.Errorf("%s: metadata %+v, want %+v", c.format, got, meta)
		}
		wantAlpha := map[Format]string{Kohya: "2", Diffusers: "4", PEFT: "4"}[c.format]
		if back.Metadata[KeyRank] != "4" || back.Metadata[KeyAlpha] != wantAlpha {
			t.Errorf("%s: rank %q alpha %q, want 4 and %s", c.format, back.Metadata[KeyRank], back.Metadata[KeyAlpha], wantAlpha)
		}
		back.Attach(tg)
		expectClose(t, ref, c.key, unetLoRAOutput(t, u), 1e-4, 1)
		Detach(tg)
		src.Release()
		back.Release()
	}
}

// TestSave_kohyaToDiffusers exports kohya adapters (scale 0.5) in the
// diffusers layout, which has no scale: it is folded into Up, and the file
// still reproduces the kohya output.
func TestSave_kohyaToDiffusers(t *testing.T) {
	e := engine(t)
	u := loadUNet(t, e)
	ref, _ := refFile(t, e, "unet_lora.safetensors")
	tg := Targets{UNet: u.W}
	src, err := Load(loraFile(t, "lora_kohya.safetensors"), tg)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Release()
	p := filepath.Join(t.TempDir(), "d.safetensors")
	if err := Save(p, src.Set, Diffusers, nil); err != nil {
		t.Fatal(err)
	}
	back, err := Load(p, tg)
	if err != nil {
		t.Fatal(err)
	}
	defer back.Release()
	k := "mid_block.attentions.0.transformer_blocks.0.attn2.to_v"
	a, b := src.UNet[k], back.UNet[k]
	if b.Scale != 1 {
		t.Errorf("scale %v after folding, want 1", b.Scale)
	}
	sameTensor(t, "down", a.Down, b.Down)
	au, bu := a.Up.MustRead(), b.Up.MustRead()
	for i := range au {
		if bu[i] != 0.5*au[i] {
			t.Fatalf("up[%d] = %v, want 0.5 * %v", i, bu[i], au[i])
		}
	}
	back.Attach(tg)
	defer Detach(tg)
	expectClose(t, ref, "out/noise_pred_lora_kohya", unetLoRAOutput(t, u), 1e-4, 1)
}

// TestSave_textEncoder round-trips text-encoder adapters through the kohya
// and diffusers layouts.
func TestSave_textEncoder(t *testing.T) {
	e := engine(t)
	u := loadUNet(t, e)
	_, tw := loadTextModel(t, e)
	tg := Targets{UNet: u.W, TextEncoder: tw}
	file, _ := teLoRAFile(t)
	src, err := Load(file, tg)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Release()
	for _, f := range []Format{Kohya, Diffusers, PEFT} {
		p := filepath.Join(t.TempDir(), "te.safetensors")
		s := src.Set
		if f != Kohya { // scale 1.5 would be folded into Up
			s = Set{UNet: src.UNet, TextEncoder: nn.Adapters{}}
			for k, a := range src.TextEncoder {
				s.TextEncoder[k] = &nn.LoRA{Down: a.Down, Up: a.Up, Scale: 1}
			}
		}
		if err := Save(p, s, f, nil); err != nil {
			t.Fatal(err)
		}
		back, err := Load(p, tg)
		if err != nil {
			t.Fatal(err)
		}
		sameAdapters(t, string(f)+" text encoder", s.TextEncoder, back.TextEncoder)
		sameAdapters(t, string(f)+" U-Net", s.UNet, back.UNet)
		if _, ok := back.Metadata[KeyRank]; f == Kohya && ok {
			t.Errorf("%s: rank metadata written for adapters of mixed scale", f)
		}
		back.Release()
	}
}

// TestSave_errors: bad requests fail with a message naming the file.
func TestSave_errors(t *testing.T) {
	e := engine(t)
	p := filepath.Join(t.TempDir(), "x.safetensors")
	ok := &nn.LoRA{Down: e.FromSlice(make([]float32, 8), 2, 4), Up: e.FromSlice(make([]float32, 6), 3, 2), Scale: 1}
	bad := &nn.LoRA{Down: e.FromSlice(make([]float32, 8), 2, 4), Up: e.FromSlice(make([]float32, 9), 3, 3), Scale: 1}
	for _, c := range []struct {
		name string
		s    Set
		f    Format
	}{
		{"format", Set{UNet: nn.Adapters{"a": ok}}, "ckpt"},
		{"empty", Set{}, Kohya},
		{"rank", Set{UNet: nn.Adapters{"a": bad}}, Kohya},
		{"collision", Set{UNet: nn.Adapters{"a.b_c": ok, "a_b.c": ok}}, Kohya},
	} {
		if err := Save(p, c.s, c.f, nil); err == nil {
			t.Errorf("%s: no error", c.name)
		} else {
			t.Logf("%s: %v", c.name, err)
		}
	}
	if _, err := safetensors.Open(p); err == nil {
		t.Error("a failed Save left a file behind")
	}
}
