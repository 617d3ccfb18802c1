package vit

import (
	"fmt"
	"math/rand"
	"testing"

	"github.com/instructbooth/instructbooth/gpu"
	"github.com/instructbooth/instructbooth/internal/testenv"
	"github.com/instructbooth/instructbooth/model/nn"
)

// randomViT builds a timm ViT of the given size from random weights.
func randomViT(e *gpu.Engine, width, depth, heads, mlp, patch, grid int) (*Model, error) {
	rng := rand.New(rand.NewSource(1))
	w := nn.NewWeights(e)
	set := func(name string, scale float32, shape ...int) {
		n := 1
		for _, d := range shape {
			n *= d
		}
		v := make([]float32, n)
		for i := range v {
			v[i] = scale * float32(rng.NormFloat64())
		}
		t, err := e.Upload(gpu.Weights, v, shape...)
		if err != nil {
			panic(err)
		}
		w.Set(name, t)
	}
	d := width
	set("cls_token", 0.5, 1, 1, d)
	set("pos_embed", 0.5, 1, 1+grid*grid, d)
	set("patch_embed.proj.weight", 0.03, d, 3, patch, patch)
	set("patch_embed.proj.bias", 0.1, d)
	set("norm.weight", 0.1, d)
	set("norm.bias", 0.1, d)
	for i := 0; i < depth; i++ {
		b := fmt.Sprintf("blocks.%d.", i)
		for _, ln := range []string{"norm1", "norm2"} {
			set(b+ln+".weight", 0.1, d)
			set(b+ln+".bias", 0.1, d)
		}
		set(b+"attn.qkv.weight", 0.03, 3*d, d)
		set(b+"attn.qkv.bias", 0.1, 3*d)
		set(b+"attn.proj.weight", 0.03, d, d)
		set(b+"attn.proj.bias", 0.1, d)
		set(b+"mlp.fc1.weight", 0.03, mlp, d)
		set(b+"mlp.fc1.bias", 0.1, mlp)
		set(b+"mlp.fc2.weight", 0.015, d, mlp)
		set(b+"mlp.fc2.bias", 0.1, d)
	}
	return New(w, Config{Heads: heads})
}

// BenchmarkViTL_oneBlock times ImageReward-v1.0's ViT-L/16 at 224 pixels
// cut to one block (the full encoder is 24 blocks): an estimate of the
// real model's cost on this adapter.
func BenchmarkViTL_oneBlock(b *testing.B) {
	e := testenv.Engine(b)
	m, err := randomViT(e, 1024, 1, 16, 4096, 16, 14)
	if err != nil {
		b.Fatal(err)
	}
	defer m.W.Release()
	x := e.Zeros(1, 3, 224, 224)
	defer x.Release()
	run := func() {
		e.NoGrad(func() {
			s := e.Scope()
			out, err := m.Forward(x)
			if err != nil {
				b.Fatal(err)
			}
			out.Last.MustRead()
			s.Close()
		})
	}
	run() // compile the pipelines
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		run()
	}
}
