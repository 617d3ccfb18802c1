package nn

import (
	"github.com/instructbooth/instructbooth/gpu"
)

// LoRA is a low-rank adapter on one linear or conv layer:
// y = W x + b + Scale * Up(Down(x)). On a linear layer Down is [rank, in]
// and Up [out, rank]; on a conv layer Down is [rank, Cin, KH, KW] (the base
// kernel, applied with the base stride and padding) and Up
// [Cout, rank, 1, 1] — for a 1x1 conv that is a linear map over channels.
type LoRA struct {
	Down, Up *gpu.Tensor
	Scale    float32
}

// Adapters maps a module key (e.g.
// "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q") to its
// adapter. Weights views share one Adapters map.
type Adapters map[string]*LoRA

// Linear applies the nn.Linear at w (keys "weight" [out, in], optional
// "bias" [out]) to x [..., in], plus the module's LoRA adapter if one is
// attached.
func Linear(w *Weights, x *gpu.Tensor) *gpu.Tensor {
	e := w.E
	y := e.Linear(x, w.Get("weight"), w.Opt("bias")) // [..., out]
	if a := w.adapter(); a != nil {
		d := e.Linear(x, a.Down, nil) // [..., rank]
		u := e.Linear(d, a.Up, nil)   // [..., out]
		y = e.Add(y, e.Scale(u, a.Scale))
	}
	return y
}

// Conv2d applies the nn.Conv2d at w (keys "weight" [Cout, Cin, KH, KW],
// optional "bias") to x [N, Cin, H, W], plus the module's LoRA adapter if
// one is attached.
func Conv2d(w *Weights, x *gpu.Tensor, stride, pad int) *gpu.Tensor {
	e := w.E
	y := e.Conv2d(x, w.Get("weight"), w.Opt("bias"), stride, pad) // [N, Cout, Ho, Wo]
	if a := w.adapter(); a != nil {
		d := e.Conv2d(x, a.Down, nil, stride, pad) // [N, rank, Ho, Wo]
		u := e.Conv2d(d, a.Up, nil, 1, 0)          // [N, Cout, Ho, Wo]
		y = e.Add(y, e.Scale(u, a.Scale))
	}
	return y
}

// GroupNorm applies the nn.GroupNorm at w to x [N, C, ...].
func GroupNorm(w *Weights, x *gpu.Tensor, groups int, eps float32) *gpu.Tensor {
	return w.E.GroupNorm(x, w.Opt("weight"), w.Opt("bias"), groups, eps)
}

// LayerNorm applies the nn.LayerNorm at w over the last dimension.
func LayerNorm(w *Weights, x *gpu.Tensor, eps float32) *gpu.Tensor {
	return w.E.LayerNorm(x, w.Opt("weight"), w.Opt("bias"), eps)
}

func (w *Weights) adapter() *LoRA {
	if w.adapters == nil {
		return nil
	}
	k := w.prefix
	if len(k) > 0 {
		k = k[:len(k)-1]
	}
	return (*w.adapters)[k]
}

// Attach sets the adapter map consulted by Linear for every view of w.
func (w *Weights) Attach(a Adapters) { *w.adapters = a }
