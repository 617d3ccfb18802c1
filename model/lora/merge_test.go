package lora

import (
	"math"
	"math/rand"
	"path/filepath"
	"testing"

	"github.com/instructbooth/instructbooth/model/nn"
	"github.com/instructbooth/instructbooth/model/safetensors"
	"github.com/instructbooth/instructbooth/model/sd"
)

// TestMerge_equalsAttached merges the fixture's kohya LoRA into the base
// weights: the U-Net's output equals the attached LoRA's (within 1e-5) and
// diffusers' (README tolerance); merging at weight -1 restores the base
// output. On binary16-packed weights the merge is repacked and agrees to
// binary16 rounding.
func TestMerge_equalsAttached(t *testing.T) {
	e := engine(t)
	ref, _ := refFile(t, e, "unet_lora.safetensors")
	base, _ := refFile(t, e, "unet.safetensors")
	for _, f16 := range []bool{false, true} {
		p, err := sd.Load(e, filepath.Join(fixtures(t), "diffusers"), sd.LoadOptions{Components: sd.CompUNet, F16Weights: f16})
		if err != nil {
			t.Fatal(err)
		}
		u := p.UNet
		tg := Targets{UNet: u.W}
		l, err := Load(loraFile(t, "lora_kohya.safetensors"), tg)
		if err != nil {
			t.Fatal(err)
		}
		before := unetLoRAOutput(t, u).MustRead()
		l.Attach(tg)
		attached := unetLoRAOutput(t, u).MustRead()
		Detach(tg)
		if err := l.Merge(tg, 1); err != nil {
			t.Fatal(err)
		}
		merged := unetLoRAOutput(t, u)
		worst, absmax := maxErr(merged.MustRead(), attached)
		tol := 1e-5
		if f16 {
			tol = 2e-3 // the merged weights are rounded to binary16 again
		}
		t.Logf("f16 %v: merged vs attached: max abs error %.2g (absmax %.3g)", f16, worst, absmax)
		if worst > tol*math.Max(1, absmax) {
			t.Errorf("f16 %v: merged output differs from the attached LoRA's by %.3g", f16, worst)
		}
		if !f16 {
			expectClose(t, ref, "out/noise_pred_lora_kohya", merged, 1e-4, 1)
		}
		if err := l.Merge(tg, -1); err != nil {
			t.Fatal(err)
		}
		undone := unetLoRAOutput(t, u)
		if w, _ := maxErr(undone.MustRead(), before); w > tol*math.Max(1, absmax) {
			t.Errorf("f16 %v: merging at -1 leaves the output %.3g off the base", f16, w)
		}
		if !f16 {
			expectClose(t, base, "out/noise_pred", undone, 1e-4, 1)
		}
		l.Release()
		p.Release()
	}
}

// TestMerge_conv merges adapters on a 3x3 conv and a linear layer with
// random Up and Down and compares with the attached adapters.
func TestMerge_conv(t *testing.T) {
	e := engine(t)
	u := loadUNet(t, e)
	mods := []string{"down_blocks.0.resnets.0.conv1", "up_blocks.3.resnets.2.conv_shortcut", "mid_block.attentions.0.proj_in", "down_blocks.1.attentions.0.transformer_blocks.0.ff.net.2"}
	a, err := New(u.W, mods, 3, 1.5, 7)
	if err != nil {
		t.Fatal(err)
	}
	s := &Set{UNet: a}
	defer s.Release()
	rng := rand.New(rand.NewSource(3))
	for _, ad := range a {
		ad.Up.Write(randVals(rng, ad.Up.Len(), 0.3))
	}
	tg := Targets{UNet: u.W}
	s.Attach(tg)
	attached := unetLoRAOutput(t, u).MustRead()
	Detach(tg)
	if err := s.Merge(tg, 1); err != nil {
		t.Fatal(err)
	}
	worst, absmax := maxErr(unetLoRAOutput(t, u).MustRead(), attached)
	t.Logf("conv/linear merge: max abs error %.2g (absmax %.3g)", worst, absmax)
	if worst > 1e-5*math.Max(1, absmax) {
		t.Errorf("merged conv adapters differ from attached by %.3g", worst)
	}
	if err := Merge(u.W, nn.Adapters{"nope": a[mods[0]]}, 1); err == nil {
		t.Error("merging onto a missing layer succeeded")
	}
}

// TestAttachAll_twoLoRAs applies the kohya (weight 0.7) and diffusers
// (weight 0.3) fixture LoRAs at once: the output equals the base weights
// with both merged, W + 0.7 (0.5 B1 A1) + 0.3 B2 A2, within 1e-5.
func TestAttachAll_twoLoRAs(t *testing.T) {
	e := engine(t)
	u := loadUNet(t, e)
	tg := Targets{UNet: u.W}
	k, err := Load(loraFile(t, "lora_kohya.safetensors"), tg)
	if err != nil {
		t.Fatal(err)
	}
	defer k.Release()
	d, err := Load(loraFile(t, "lora_diffusers.safetensors"), tg)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Release()
	k.MulScale(0.7)
	d.MulScale(0.3)
	AttachAll(tg, &k.Set, &d.Set)
	both := unetLoRAOutput(t, u).MustRead()
	k.Attach(tg)
	one := unetLoRAOutput(t, u).MustRead()
	Detach(tg)
	if w, _ := maxErr(one, both); w < 1e-3 {
		t.Fatalf("the second LoRA changes the output by only %.3g", w)
	}
	if err := k.Merge(tg, 1); err != nil {
		t.Fatal(err)
	}
	if err := d.Merge(tg, 1); err != nil {
		t.Fatal(err)
	}
	worst, absmax := maxErr(unetLoRAOutput(t, u).MustRead(), both)
	t.Logf("two LoRAs attached vs merged: max abs error %.2g (absmax %.3g)", worst, absmax)
	if worst > 1e-5*math.Max(1, absmax) {
		t.Errorf("two attached LoRAs differ from their merged sum by %.3g", worst)
	}
}

// TestSave_fixtureLayout exports the fixture LoRAs and checks that the
// files have exactly the fixture files' keys, shapes and (kohya) alpha
// values, so other tools read them as they read the fixtures.
func TestSave_fixtureLayout(t *testing.T) {
	e := engine(t)
	u := loadUNet(t, e)
	tg := Targets{UNet: u.W}
	for _, c := range []struct {
		file   string
		format Format
	}{{"lora_kohya.safetensors", Kohya}, {"lora_diffusers.safetensors", Diffusers}} {
		src, err := Load(loraFile(t, c.file), tg)
		if err != nil {
			t.Fatal(err)
		}
		out := filepath.Join(t.TempDir(), c.file)
		meta := Meta{BaseModelHash: "abc", Identifier: "sks", ClassNoun: "dog", Description: "red", Steps: 12}
		if err := Save(out, src.Set, c.format, meta.Map()); err != nil {
			t.Fatal(err)
		}
		src.Release()
		want, err := safetensors.Open(loraFile(t, c.file))
		if err != nil {
			t.Fatal(err)
		}
		got, err := safetensors.Open(out)
		if err != nil {
			t.Fatal(err)
		}
		wn, gn := want.Names(), got.Names()
		if len(wn) != len(gn) {
			t.Errorf("%s: %d keys, the fixture has %d", c.format, len(gn), len(wn))
		}
		for _, n := range wn {
			wi, _ := want.Info(n)
			gi, ok := got.Info(n)
			if !ok {
				t.Errorf("%s: key %q missing", c.format, n)
				continue
			}
			if !shapeEq(wi.Shape, gi.Shape) || wi.DType != gi.DType {
				t.Errorf("%s: %s is %s %v, the fixture's %s %v", c.format, n, gi.DType, gi.Shape, wi.DType, wi.Shape)
			}
			if c.format == Kohya && len(n) > 6 && n[len(n)-6:] == ".alpha" {
				wv, _, _ := want.Float32(n)
				gv, _, _ := got.Float32(n)
				if len(gv) != 1 || gv[0] != wv[0] {
					t.Errorf("%s: alpha %v, the fixture's %v", n, gv, wv)
				}
			}
		}
		if m := ParseMeta(got.Metadata); m != meta {
			t.Errorf("%s: metadata %+v", c.format, m)
		}
		want.Close()
		got.Close()
	}
}
