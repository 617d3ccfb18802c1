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
// adapter: one LoRA file's (or one training run's) adapters. Several sets
// may be attached to a model at once (AttachAll); each applies on its own.
type Adapters map[string]*LoRA

// Linear applies the nn.Linear at w (keys "weight" [out, in], optional
// "bias" [out]) to x [..., in], plus the module's adapter in every
// attached set, in attachment order.
func Linear(w *Weights, x *gpu.Tensor) *gpu.Tensor {
	e := w.E
	y := e.Linear(x, w.Get("weight"), w.Opt("bias")) // [..., out]
	for _, as := range *w.adapters {
		if a := w.adapter(as); a != nil {
			d := e.Linear(x, a.Down, nil) // [..., rank]
			u := e.Linear(d, a.Up, nil)   // [..., out]
			y = e.Add(y, e.Scale(u, a.Scale))
		}
	}
	return y
}

// Conv2d applies the nn.Conv2d at w (keys "weight" [Cout, Cin, KH, KW],
// optional "bias") to x [N, Cin, H, W], plus the module's adapter in
// every attached set.
func Conv2d(w *Weights, x *gpu.Tensor, stride, pad int) *gpu.Tensor {
	e := w.E
	y := e.Conv2d(x, w.Get("weight"), w.Opt("bias"), stride, pad) // [N, Cout, Ho, Wo]
	for _, as := range *w.adapters {
		if a := w.adapter(as); a != nil {
			d := e.Conv2d(x, a.Down, nil, stride, pad) // [N, rank, Ho, Wo]
			u := e.Conv2d(d, a.Up, nil, 1, 0)          // [N, Cout, Ho, Wo]
			y = e.Add(y, e.Scale(u, a.Scale))
		}
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

// adapter returns the adapter of the module at this view in as, or nil.
func (w *Weights) adapter(as Adapters) *LoRA {
	k := w.prefix
	if len(k) > 0 {
		k = k[:len(k)-1]
	}
	return as[k]
}

// Attach makes a the only adapter set that Linear and Conv2d apply, for
// every view of w; nil removes every adapter.
func (w *Weights) Attach(a Adapters) {
	if a == nil {
		*w.adapters = nil
		return
	}
	*w.adapters = []Adapters{a}
}

// AttachAll makes Linear and Conv2d apply every set of as (nil sets are
// skipped), replacing what was attached; a layer adapted by several sets
// gets the sum of their low-rank terms.
func (w *Weights) AttachAll(as ...Adapters) {
	var keep []Adapters
	for _, a := range as {
		if a != nil {
			keep = append(keep, a)
		}
	}
	*w.adapters = keep
}

// Attached returns the attached adapter sets in order.
func (w *Weights) Attached() []Adapters { return append([]Adapters(nil), *w.adapters...) }
