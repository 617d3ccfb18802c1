// Package lora reads, creates and writes LoRA adapters for the SD 1.x
// U-Net and CLIP text encoder, as nn.Adapters that nn.Linear and nn.Conv2d
// apply: y = W x + b + Scale * Up(Down(x)).
//
// Adapters are keyed by the module path of the model they adapt: the
// diffusers path for the U-Net
// ("down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q") and the
// transformers path for the text encoder
// ("text_model.encoder.layers.0.self_attn.q_proj"). Three file layouts are
// read, each through one key conversion (load.go):
//
//   - kohya: lora_unet_<path with . -> _>.lora_down.weight / .lora_up.weight
//     / .alpha (scale = alpha / rank; no alpha means alpha = rank), and
//     lora_te_<path with . -> _> for the text encoder. The underscore names
//     are resolved against the target model's own module names, never by
//     guessing where the dots were.
//   - diffusers: unet.<path>.lora.down.weight / .lora.up.weight (also
//     .lora_layer., .lora_linear_layer. and the older
//     <attn>.processor.to_q_lora.down.weight), text_encoder.<path>...;
//     scale 1 unless a network alpha unet.<path>.alpha is present.
//   - PEFT: unet.<path>.lora_A.weight (down) / .lora_B.weight (up).
//
// Save (save.go) writes the kohya, diffusers and PEFT layouts. Several
// LoRAs apply at once with AttachAll (each weighed by MulScale); Merge
// (merge.go) folds adapters into the base weights.
package lora

import (
	"fmt"
	"math"
	"math/rand"
	"sort"
	"strings"

	"github.com/instructbooth/instructbooth/gpu"
	"github.com/instructbooth/instructbooth/model/nn"
)

// Format is a LoRA file layout.
type Format string

const (
	Kohya     Format = "kohya"
	Diffusers Format = "diffusers"
	PEFT      Format = "peft"
)

// Set is the adapters of one LoRA: for the U-Net (keyed by diffusers module
// path) and for the text encoder (keyed by transformers module path under
// "text_model."). Either map may be empty.
type Set struct {
	UNet        nn.Adapters
	TextEncoder nn.Adapters
}

// Targets are the models a LoRA file is loaded against: their weights give
// the module names (to resolve kohya names) and shapes (to validate the
// adapters). UNet is required; TextEncoder is the root holding
// "text_model.*" (as passed to clip.NewTextModel) or nil, in which case
// text-encoder keys are reported in Loaded.Skipped and not uploaded.
type Targets struct {
	UNet        *nn.Weights
	TextEncoder *nn.Weights
}

// Attach makes the models of t apply the adapters of s (replacing any
// attached before). A nil target is left alone.
func (s *Set) Attach(t Targets) {
	if t.UNet != nil {
		t.UNet.Attach(s.UNet)
	}
	if t.TextEncoder != nil {
		t.TextEncoder.Attach(s.TextEncoder)
	}
}

// AttachAll makes the models of t apply the adapters of every set at once
// (replacing any attached before): a layer adapted by several sets gets the
// sum of their terms. Weigh a set with MulScale first. A nil target is
// left alone.
func AttachAll(t Targets, sets ...*Set) {
	var u, te []nn.Adapters
	for _, s := range sets {
		if s != nil {
			u = append(u, s.UNet)
			te = append(te, s.TextEncoder)
		}
	}
	if t.UNet != nil {
		t.UNet.AttachAll(u...)
	}
	if t.TextEncoder != nil {
		t.TextEncoder.AttachAll(te...)
	}
}

// MulScale multiplies the scale of every adapter of s by w (the weight a
// LoRA is applied with).
func (s *Set) MulScale(w float32) {
	for _, m := range []nn.Adapters{s.UNet, s.TextEncoder} {
		for _, a := range m {
			a.Scale *= w
		}
	}
}

// Detach removes every adapter from the models of t.
func Detach(t Targets) {
	if t.UNet != nil {
		t.UNet.Attach(nil)
	}
	if t.TextEncoder != nil {
		t.TextEncoder.Attach(nil)
	}
}

// Params returns every Down and Up tensor, U-Net first, each map in sorted
// module order (down before up), e.g. for an optimizer.
func (s *Set) Params() []*gpu.Tensor {
	var out []*gpu.Tensor
	for _, m := range []nn.Adapters{s.UNet, s.TextEncoder} {
		for _, k := range sortedKeys(m) {
			out = append(out, m[k].Down, m[k].Up)
		}
	}
	return out
}

// SetRequiresGrad makes every adapter tensor trainable (or frozen).
func (s *Set) SetRequiresGrad(v bool) {
	for _, p := range s.Params() {
		p.SetRequiresGrad(v)
	}
}

// Release frees every adapter tensor.
func (s *Set) Release() {
	for _, p := range s.Params() {
		p.Release()
	}
	s.UNet, s.TextEncoder = nil, nil
}

func sortedKeys(m nn.Adapters) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// modules indexes the adaptable layers of one model: every key
// "<path>.weight" of a 2-D (linear) or 4-D (conv) tensor, except
// embedding tables.
type modules struct {
	w      *nn.Weights
	shapes map[string][]int  // module path -> weight shape
	under  map[string]string // kohya name (path with . -> _) -> path; "" when ambiguous
	// other holds the modules that have a weight but are no linear or conv
	// layer (norms, embeddings), by path and by kohya name, for errors.
	other map[string][]int
}

func indexModules(w *nn.Weights) *modules {
	m := &modules{w: w, shapes: map[string][]int{}, under: map[string]string{}, other: map[string][]int{}}
	for _, k := range w.Keys() {
		path, ok := strings.CutSuffix(k, ".weight")
		if !ok {
			continue
		}
		last := path[strings.LastIndex(path, ".")+1:]
		s := w.Shape(k)
		if strings.HasSuffix(last, "embedding") || len(s) != 2 && len(s) != 4 {
			m.other[path] = s
			m.other[strings.ReplaceAll(path, ".", "_")] = s
			continue
		}
		m.shapes[path] = s
		u := strings.ReplaceAll(path, ".", "_")
		if prev, dup := m.under[u]; dup && prev != path {
			m.under[u] = "" // two modules share the underscore name
		} else {
			m.under[u] = path
		}
	}
	return m
}

// AttentionModules lists the U-Net's attention projections (to_q, to_k,
// to_v, to_out.0 of every attn1 and attn2), the usual DreamBooth LoRA
// targets, in sorted order.
func AttentionModules(unet *nn.Weights) []string {
	var out []string
	for path := range indexModules(unet).shapes {
		for _, p := range []string{".to_q", ".to_k", ".to_v", ".to_out.0"} {
			if strings.HasSuffix(path, p) && (strings.Contains(path, ".attn1.") || strings.Contains(path, ".attn2.")) {
				out = append(out, path)
			}
		}
	}
	sort.Strings(out)
	return out
}

// New creates fresh trainable adapters of the given rank on the listed
// modules of w (linear or conv layers), scale alpha/rank. As in PEFT and
// kohya, Down starts as Kaiming-uniform noise (bound 1/sqrt(fan_in)) from
// seed and Up as zeros, so the adapted model starts equal to the base.
func New(w *nn.Weights, paths []string, rank int, alpha float32, seed int64) (nn.Adapters, error) {
	if rank < 1 {
		return nil, fmt.Errorf("lora: rank %d", rank)
	}
	idx := indexModules(w)
	rng := rand.New(rand.NewSource(seed))
	out := nn.Adapters{}
	fail := func(err error) (nn.Adapters, error) {
		(&Set{UNet: out}).Release()
		return nil, err
	}
	for _, p := range paths {
		s, ok := idx.shapes[p]
		if !ok {
			return fail(fmt.Errorf("lora: no linear or conv layer %q in the model", p))
		}
		dshape := []int{rank, s[1]}
		ushape := []int{s[0], rank}
		if len(s) == 4 {
			dshape = []int{rank, s[1], s[2], s[3]}
			ushape = []int{s[0], rank, 1, 1}
		}
		fan := 1
		for _, d := range dshape[1:] {
			fan *= d
		}
		bound := 1 / math.Sqrt(float64(fan))
		dv := make([]float32, rank*fan)
		for i := range dv {
			dv[i] = float32((2*rng.Float64() - 1) * bound)
		}
		down, err := w.E.Upload(gpu.Weights, dv, dshape...)
		if err != nil {
			return fail(err)
		}
		up, err := w.E.Upload(gpu.Weights, make([]float32, s[0]*rank), ushape...)
		if err != nil {
			down.Release()
			return fail(err)
		}
		down.Name, up.Name = p+".lora.down.weight", p+".lora.up.weight"
		down.SetRequiresGrad(true)
		up.SetRequiresGrad(true)
		out[p] = &nn.LoRA{Down: down, Up: up, Scale: alpha / float32(rank)}
	}
	return out, nil
}
