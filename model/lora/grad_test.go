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
				}
			}
			if checked != 20 {
				t.Errorf("checked %d gradients, the fixture has 20", checked)
			}
			pred.Release()
			loss.Release()
		})
	}
	t.Logf("activations held for backward: %d KiB plain, %d KiB checkpointed", held[false]>>10, held[true]>>10)
	if held[true] >= held[false]/2 {
		t.Errorf("checkpointing keeps %d bytes of activations, plain %d: it does not seem to checkpoint", held[true], held[false])
	}
}
