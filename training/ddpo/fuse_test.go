package ddpo

import (
	"math"
	"math/rand"
	"path/filepath"
	"testing"

	"github.com/instructbooth/instructbooth/internal/testenv"
	"github.com/instructbooth/instructbooth/model/lora"
	"github.com/instructbooth/instructbooth/model/nn"
	"github.com/instructbooth/instructbooth/model/sd"
)

// TestFuseLoRA: the U-Net with the fixture's kohya LoRA fused into its
// weights computes what it computes with the LoRA attached, for f32
// weights and for binary16-packed ones (which fusing rounds once more).
func TestFuseLoRA(t *testing.T) {
	e := testenv.Engine(t)
	fx := filepath.Join(testenv.Fixtures(t), "sd-tiny")
	rng := rand.New(rand.NewSource(9))
	x := randn(rng, 2*4*8*8)
	ctx := randn(rng, 2*77*32)
	run := func(u *sd.UNet) []float32 {
		var out []float32
		e.NoGrad(func() {
			s := e.Scope()
			defer s.Close()
			out = u.Forward(e.FromSlice(x, 2, 4, 8, 8), e.FromSlice([]float32{801, 51}, 2), e.FromSlice(ctx, 2, 77, 32)).MustRead()
		})
		return out
	}
	for _, f16 := range []bool{false, true} {
		p, err := sd.Load(e, filepath.Join(fx, "diffusers"), sd.LoadOptions{Components: sd.CompUNet, F16Weights: f16})
		if err != nil {
			t.Fatal(err)
		}
		l, err := lora.Load(filepath.Join(fx, "lora", "lora_kohya.safetensors"), lora.Targets{UNet: p.UNet.W})
		if err != nil {
			t.Fatal(err)
		}
		base := run(p.UNet)
		l.Attach(lora.Targets{UNet: p.UNet.W})
		want := run(p.UNet)
		p.UNet.W.Attach(nil)
		if err := FuseLoRA(p.UNet.W, l.UNet); err != nil {
			t.Fatal(err)
		}
		got := run(p.UNet)
		var worst, scale, effect float64
		for i := range want {
			worst = math.Max(worst, math.Abs(float64(got[i]-want[i])))
			scale = math.Max(scale, math.Abs(float64(want[i])))
			effect = math.Max(effect, math.Abs(float64(want[i]-base[i])))
		}
		tol := 1e-5
		if f16 {
			tol = 2e-3 // one more binary16 rounding of every adapted weight
		}
		t.Logf("f16 weights %v: fused vs attached max diff %.3g (output max %.3g, LoRA effect %.3g)", f16, worst, scale, effect)
		if worst > tol*scale || effect < 0.05*scale {
			t.Errorf("f16 %v: fused differs from attached by %.3g (tolerance %.3g), LoRA effect %.3g", f16, worst, tol*scale, effect)
		}
		if f16 && !p.UNet.W.Packed("down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.weight") {
			t.Error("fusing unpacked a packed weight")
		}
		if err := FuseLoRA(p.UNet.W, nn.Adapters{"no.such.layer": l.UNet[lora.AttentionModules(p.UNet.W)[0]]}); err == nil {
			t.Error("an adapter on a missing layer was fused")
		}
		l.Release()
		p.Release()
	}
}
