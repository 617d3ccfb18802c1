package lora

import (
	"strings"
	"testing"

	"github.com/instructbooth/instructbooth/gpu"
)

// TestGradients_matchReference trains nothing but checks one training step's
// gradients end to end: with the fixture's kohya LoRA attached (scale 0.5)
// and every U-Net weight and adapter trainable,
// L = mean((eps - unet(z_t, t, c))^2) and dL/d(z_t, c, base weights, LoRA
// down/up) match ref/grads.safetensors, with and without gradient
// checkpointing.
func TestGradients_matchReference(t *testing.T) {
	e := engine(t)
	u := loadUNet(t, e)
	tg := Targets{UNet: u.W}
	l, err := Load(loraFile(t, "lora_kohya.safetensors"), tg)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release()
	l.Attach(tg)
	defer Detach(tg)
	params := append(u.W.Params(), l.Params()...)
	for _, p := range params {
		p.SetRequiresGrad(true)
	}
	defer func() {
		gpu.ZeroGrad(params...)
		for _, p := range params {
			p.SetRequiresGrad(false)
		}
	}()

	f, get := refFile(t, e, "grads.safetensors")
	ts := timesteps(t, e, f, "in/timesteps")
	eps := get("in/eps")
	plain := map[string][]float32{} // gradients without checkpointing
	held := map[bool]uint64{}       // activation bytes alive after the forward pass
	ckptDiff := 0.0                 // largest relative change checkpointing makes to a gradient
	for _, ckpt := range []bool{false, true} {
		t.Run(map[bool]string{false: "plain", true: "checkpointing"}[ckpt], func(t *testing.T) {
			u.Checkpointing = ckpt
			defer func() { u.Checkpointing = false }()
			gpu.ZeroGrad(params...)
			zt := get("in/z_t").SetRequiresGrad(true)
			ctx := get("in/encoder_hidden_states").SetRequiresGrad(true)
			defer zt.Release()
			defer ctx.Release()
			before := e.MemStats().Live[gpu.Activations]
			pred := u.Forward(zt, ts, ctx)
			loss := e.MSELoss(pred, eps)
			held[ckpt] = e.MemStats().Live[gpu.Activations] - before
			expectClose(t, f, "out/pred", pred, 1e-4, 1)
			expectClose(t, f, "out/loss", loss, 1e-4, 1)
			if err := e.Backward(loss); err != nil {
				t.Fatal(err)
			}
			checked := 0
			for _, key := range f.Names() {
				name, ok := strings.CutPrefix(key, "grad/")
				if !ok {
					continue
				}
				var g *gpu.Tensor
				switch {
				case name == "z_t":
					g = zt.Grad
				case name == "encoder_hidden_states":
					g = ctx.Grad
				case strings.Contains(name, ".lora_layer."):
					mod, rest, _ := strings.Cut(name, ".lora_layer.")
					a := l.UNet[mod]
					if a == nil {
						t.Fatalf("%s: no adapter on %s", key, mod)
					}
					if rest == "down.weight" {
						g = a.Down.Grad
					} else {
						g = a.Up.Grad
					}
				default:
					g = u.W.Get(name).Grad
				}
				expectClose(t, f, key, g, 1e-3, 0)
				checked++
				if g == nil {
					continue
				}
				if !ckpt {
					plain[key] = g.MustRead()
				} else if worst, absmax := maxErr(g.MustRead(), plain[key]); worst > 1e-5*absmax {
					t.Errorf("%s: checkpointing changes the gradient by %.3g (absmax %.3g)", key, worst, absmax)
				} else {
					ckptDiff = max(ckptDiff, worst/absmax)
				}
			}
			if checked != 20 {
				t.Errorf("checked %d gradients, the fixture has 20", checked)
			}
			pred.Release()
			loss.Release()
		})
	}
	t.Logf("activations held for backward: %d KiB plain, %d KiB checkpointed; gradients differ by at most %.2g relative", held[false]>>10, held[true]>>10, ckptDiff)
	if held[true] >= held[false]/2 {
		t.Errorf("checkpointing keeps %d bytes of activations, plain %d: it does not seem to checkpoint", held[true], held[false])
	}
}

// TestNew_startsAtBase: fresh adapters (Up = 0) leave the U-Net's output
// unchanged, and the first backward pass reaches Up (Down's gradient is
// Up^T-weighted, so zero at the start).
func TestNew_startsAtBase(t *testing.T) {
	e := engine(t)
	u := loadUNet(t, e)
	mods := AttentionModules(u.W)
	if len(mods) != 128 {
		t.Fatalf("%d attention projections, want 128 (32 attention modules x q, k, v, out)", len(mods))
	}
	a, err := New(u.W, mods, 4, 4, 1)
	if err != nil {
		t.Fatal(err)
	}
	s := &Set{UNet: a}
	defer s.Release()
	base := unetLoRAOutput(t, u).MustRead()
	tg := Targets{UNet: u.W}
	s.Attach(tg)
	defer Detach(tg)
	got := unetLoRAOutput(t, u).MustRead()
	if worst, _ := maxErr(got, base); worst != 0 {
		t.Errorf("fresh adapters change the output by %.3g", worst)
	}
	f, get := refFile(t, e, "unet_lora.safetensors")
	x := get("in/latents")
	loss := e.MSELoss(u.Forward(x, timesteps(t, e, f, "in/timesteps"), get("in/encoder_hidden_states")), e.Zeros(x.Shape()...))
	if err := e.Backward(loss); err != nil {
		t.Fatal(err)
	}
	defer gpu.ZeroGrad(s.Params()...)
	m := a["down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q"] // (at the 1x1 mid block, self-attention ignores q)
	if m.Up.Grad == nil || m.Down.Grad == nil {
		t.Fatal("no gradient reached the adapter")
	}
	_, upMax := maxErr(make([]float32, m.Up.Len()), m.Up.Grad.MustRead())
	_, downMax := maxErr(make([]float32, m.Down.Len()), m.Down.Grad.MustRead())
	if upMax == 0 || downMax != 0 {
		t.Errorf("|dL/dUp| max %.3g (want > 0), |dL/dDown| max %.3g (want 0)", upMax, downMax)
	}
	if _, err := New(u.W, []string{"down_blocks.0.resnets.0.norm1"}, 4, 4, 1); err == nil {
		t.Error("New accepted a norm layer")
	}
}
