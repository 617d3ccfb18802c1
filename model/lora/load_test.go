package lora

import (
	"math/rand"
	"path/filepath"
	"strings"
	"testing"

	"github.com/instructbooth/instructbooth/gpu"
	"github.com/instructbooth/instructbooth/model/nn"
	"github.com/instructbooth/instructbooth/model/safetensors"
	"github.com/instructbooth/instructbooth/model/sd"
)

// unetLoRAOutput runs the U-Net on ref/unet_lora.safetensors' inputs.
func unetLoRAOutput(t *testing.T, u *sd.UNet) *gpu.Tensor {
	t.Helper()
	e := u.W.E
	f, get := refFile(t, e, "unet_lora.safetensors")
	var out *gpu.Tensor
	e.NoGrad(func() {
		out = u.Forward(get("in/latents"), timesteps(t, e, f, "in/timesteps"), get("in/encoder_hidden_states"))
	})
	return out
}

// TestLoad_matchesReference loads the fixture's kohya and diffusers files
// onto the sd-tiny U-Net and compares its noise prediction with diffusers'
// (which loaded the same files through its own LoRA loader).
func TestLoad_matchesReference(t *testing.T) {
	e := engine(t)
	u := loadUNet(t, e)
	ref, _ := refFile(t, e, "unet_lora.safetensors")
	for _, c := range []struct {
		file   string
		format Format
		scale  float32
		key    string
	}{
		{"lora_kohya.safetensors", Kohya, 0.5, "out/noise_pred_lora_kohya"},
		{"lora_diffusers.safetensors", Diffusers, 1, "out/noise_pred_lora_diffusers"},
		{"lora_peft.safetensors", PEFT, 1, "out/noise_pred_lora_diffusers"},
	} {
		l, err := Load(loraFile(t, c.file), Targets{UNet: u.W})
		if err != nil {
			t.Fatal(err)
		}
		if l.Format != c.format || len(l.UNet) != 128 || len(l.TextEncoder) != 0 || len(l.Skipped) != 0 {
			t.Fatalf("%s: format %s, %d U-Net adapters, %d text encoder, skipped %v; want %s, 128, 0, none",
				c.file, l.Format, len(l.UNet), len(l.TextEncoder), l.Skipped, c.format)
		}
		for k, a := range l.UNet {
			if a.Scale != c.scale || !shapeEq(a.Down.Shape(), []int{4, u.W.Shape(k + ".weight")[1]}) {
				t.Fatalf("%s: %s: scale %v, down %v", c.file, k, a.Scale, a.Down.Shape())
			}
		}
		l.Attach(Targets{UNet: u.W})
		expectClose(t, ref, c.key, unetLoRAOutput(t, u), 1e-4, 1)
		Detach(Targets{UNet: u.W})
		l.Release()
	}
	// Detached, the U-Net is the base model again.
	base, _ := refFile(t, e, "unet.safetensors")
	expectClose(t, base, "out/noise_pred", unetLoRAOutput(t, u), 1e-4, 1)
}

// TestLoad_peftEqualsDiffusers checks that the PEFT file gives exactly the
// diffusers file's adapters.
func TestLoad_peftEqualsDiffusers(t *testing.T) {
	e := engine(t)
	u := loadUNet(t, e)
	d, err := Load(loraFile(t, "lora_diffusers.safetensors"), Targets{UNet: u.W})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Release()
	p, err := Load(loraFile(t, "lora_peft.safetensors"), Targets{UNet: u.W})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Release()
	if len(p.UNet) != len(d.UNet) {
		t.Fatalf("%d PEFT adapters, %d diffusers", len(p.UNet), len(d.UNet))
	}
	for k, a := range d.UNet {
		b := p.UNet[k]
		if b == nil {
			t.Fatalf("PEFT file lacks %s", k)
		}
		if a.Scale != b.Scale {
			t.Errorf("%s: scale %v vs %v", k, a.Scale, b.Scale)
		}
		sameTensor(t, k+" down", a.Down, b.Down)
		sameTensor(t, k+" up", a.Up, b.Up)
	}
}

func randVals(rng *rand.Rand, n int, scale float32) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(rng.NormFloat64()) * scale
	}
	return v
}

func writeFile(t *testing.T, name string, tensors map[string]safetensors.Tensor) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := safetensors.WriteFile(p, tensors, nil); err != nil {
		t.Fatal(err)
	}
	return p
}

// fuse adds scale * Up Down to the weight of module path in w (in place),
// for comparing an adapted layer with the equivalent plain one. Down is
// [rank, K] with K = everything after the first weight dimension.
func fuse(t *testing.T, w *nn.Weights, path string, down, up []float32, rank int, scale float32) {
	t.Helper()
	wt := w.Get(path + ".weight")
	v := wt.MustRead()
	out := wt.Dim(0)
	k := len(v) / out
	for o := 0; o < out; o++ {
		for i := 0; i < k; i++ {
			s := float32(0)
			for r := 0; r < rank; r++ {
				s += up[o*rank+r] * down[r*k+i]
			}
			v[o*k+i] += scale * s
		}
	}
	if err := wt.Write(v); err != nil {
		t.Fatal(err)
	}
}

// TestLoad_convLoRA adapts a 1x1 conv (proj_in, given as 2-D tensors as
// some files do) and a 3x3 conv (LoCon layout: down [r, Cin, 3, 3], up
// [Cout, r, 1, 1]) and compares with the fused weights W + s Up Down.
func TestLoad_convLoRA(t *testing.T) {
	e := engine(t)
	u := loadUNet(t, e)
	rng := rand.New(rand.NewSource(1))
	const r = 3
	pin := "down_blocks.0.attentions.0.proj_in"
	conv := "down_blocks.1.resnets.0.conv1" // [64, 32, 3, 3]
	pd, pu := randVals(rng, r*32, 0.3), randVals(rng, 32*r, 0.3)
	cd, cu := randVals(rng, r*32*9, 0.1), randVals(rng, 64*r, 0.3)
	file := writeFile(t, "conv.safetensors", map[string]safetensors.Tensor{
		"lora_unet_" + strings.ReplaceAll(pin, ".", "_") + ".lora_down.weight":  safetensors.F32Tensor(pd, r, 32),
		"lora_unet_" + strings.ReplaceAll(pin, ".", "_") + ".lora_up.weight":    safetensors.F32Tensor(pu, 32, r),
		"lora_unet_" + strings.ReplaceAll(pin, ".", "_") + ".alpha":             safetensors.F32Tensor([]float32{1.5}),
		"lora_unet_" + strings.ReplaceAll(conv, ".", "_") + ".lora_down.weight": safetensors.F32Tensor(cd, r, 32, 3, 3),
		"lora_unet_" + strings.ReplaceAll(conv, ".", "_") + ".lora_up.weight":   safetensors.F32Tensor(cu, 64, r, 1, 1),
	})
	l, err := Load(file, Targets{UNet: u.W})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release()
	if a := l.UNet[pin]; a == nil || a.Scale != 0.5 || !shapeEq(a.Down.Shape(), []int{r, 32, 1, 1}) || !shapeEq(a.Up.Shape(), []int{32, r, 1, 1}) {
		t.Fatalf("proj_in adapter %+v", a)
	}
	if a := l.UNet[conv]; a == nil || a.Scale != 1 {
		t.Fatalf("conv1 adapter %+v", a)
	}
	l.Attach(Targets{UNet: u.W})
	adapted := unetLoRAOutput(t, u)
	Detach(Targets{UNet: u.W})
	base := unetLoRAOutput(t, u)
	fuse(t, u.W, pin, pd, pu, r, 0.5)
	fuse(t, u.W, conv, cd, cu, r, 1)
	fused := unetLoRAOutput(t, u)
	worst, absmax := maxErr(adapted.MustRead(), fused.MustRead())
	effect, _ := maxErr(base.MustRead(), fused.MustRead())
	if worst > 1e-4*max(1, absmax) || effect < 1e-2 {
		t.Errorf("conv LoRA vs fused weights: max abs error %.3g (absmax %.3g), LoRA effect %.3g", worst, absmax, effect)
	} else {
		t.Logf("conv LoRA vs fused weights: max abs error %.2g (absmax %.3g), LoRA effect %.3g", worst, absmax, effect)
	}
}

// teLoRAFile writes a kohya LoRA with adapters on two text-encoder layers
// and one U-Net layer; it returns the file and the text-encoder tensors.
func teLoRAFile(t *testing.T) (string, map[string][2][]float32) {
	rng := rand.New(rand.NewSource(2))
	const r = 2
	te := map[string][2][]float32{
		"text_model.encoder.layers.0.self_attn.q_proj": {randVals(rng, r*32, 0.3), randVals(rng, 32*r, 0.3)},
		"text_model.encoder.layers.2.mlp.fc1":          {randVals(rng, r*32, 0.3), randVals(rng, 37*r, 0.3)},
	}
	tensors := map[string]safetensors.Tensor{
		"lora_unet_mid_block_attentions_0_transformer_blocks_0_attn2_to_v.lora_down.weight": safetensors.F32Tensor(randVals(rng, r*32, 0.3), r, 32),
		"lora_unet_mid_block_attentions_0_transformer_blocks_0_attn2_to_v.lora_up.weight":   safetensors.F32Tensor(randVals(rng, 64*r, 0.3), 64, r),
	}
	for path, v := range te {
		n := "lora_te_" + strings.ReplaceAll(path, ".", "_")
		tensors[n+".lora_down.weight"] = safetensors.F32Tensor(v[0], r, 32)
		tensors[n+".lora_up.weight"] = safetensors.F32Tensor(v[1], len(v[1])/r, r)
		tensors[n+".alpha"] = safetensors.F32Tensor([]float32{3})
	}
	return writeFile(t, "te.safetensors", tensors), te
}

// TestLoad_textEncoder checks that text-encoder keys are reported as
// skipped without a text encoder, and applied to the CLIP text model with
// one (compared with fused weights).
func TestLoad_textEncoder(t *testing.T) {
	e := engine(t)
	u := loadUNet(t, e)
	file, te := teLoRAFile(t)
	l, err := Load(file, Targets{UNet: u.W})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"lora_te_text_model_encoder_layers_0_self_attn_q_proj", "lora_te_text_model_encoder_layers_2_mlp_fc1"}
	if len(l.UNet) != 1 || l.TextEncoder != nil || strings.Join(l.Skipped, ",") != strings.Join(want, ",") {
		t.Errorf("without a text encoder: %d U-Net adapters, text encoder %v, skipped %v; want 1, none, %v", len(l.UNet), l.TextEncoder, l.Skipped, want)
	}
	l.Release()

	m, tw := loadTextModel(t, e)
	l, err = Load(file, Targets{UNet: u.W, TextEncoder: tw})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release()
	if len(l.TextEncoder) != 2 || len(l.Skipped) != 0 {
		t.Fatalf("text encoder adapters %v, skipped %v", l.TextEncoder, l.Skipped)
	}
	ids := [][]int32{{49406, 320, 1125, 539, 49407, 49407, 49407}, {49406, 1929, 49407, 49407, 49407, 49407, 49407}}
	run := func() []float32 {
		var out []float32
		e.NoGrad(func() {
			o, err := m.Forward(ids)
			if err != nil {
				t.Fatal(err)
			}
			out = o.Last.MustRead()
		})
		return out
	}
	l.Attach(Targets{UNet: u.W, TextEncoder: tw})
	adapted := run()
	Detach(Targets{TextEncoder: tw})
	base := run()
	for path, v := range te {
		fuse(t, tw, path, v[0], v[1], 2, 1.5)
	}
	fused := run()
	worst, absmax := maxErr(adapted, fused)
	effect, _ := maxErr(base, fused)
	if worst > 1e-4*max(1, absmax) || effect < 1e-2 {
		t.Errorf("text encoder LoRA vs fused weights: max abs error %.3g (absmax %.3g), LoRA effect %.3g", worst, absmax, effect)
	} else {
		t.Logf("text encoder LoRA vs fused weights: max abs error %.2g (absmax %.3g), LoRA effect %.3g", worst, absmax, effect)
	}
}

// TestLoad_errors feeds malformed LoRA files: each error must name the file
// and the offending key.
func TestLoad_errors(t *testing.T) {
	e := engine(t)
	u := loadUNet(t, e)
	q := "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q"
	kq := "lora_unet_" + strings.ReplaceAll(q, ".", "_")
	f := func(v []float32, shape ...int) safetensors.Tensor { return safetensors.F32Tensor(v, shape...) }
	z := func(n int) []float32 { return make([]float32, n) }
	for _, c := range []struct {
		name    string
		tensors map[string]safetensors.Tensor
		want    []string
	}{
		{"unknown key", map[string]safetensors.Tensor{"conv_in.weight": f(z(4), 4)}, []string{`"conv_in.weight"`, "not a LoRA tensor"}},
		{"unknown module", map[string]safetensors.Tensor{"lora_unet_down_blocks_9_to_q.lora_down.weight": f(z(4), 1, 4)}, []string{`"lora_unet_down_blocks_9_to_q.lora_down.weight"`, "no linear or conv layer"}},
		{"LDM names", map[string]safetensors.Tensor{"lora_unet_input_blocks_1_1_proj_in.lora_down.weight": f(z(4), 1, 4)}, []string{"input_blocks_1_1_proj_in", "CompVis/LDM"}},
		{"norm layer", map[string]safetensors.Tensor{"unet.down_blocks.0.resnets.0.norm1.lora.down.weight": f(z(32), 1, 32)}, []string{"norm1.lora.down.weight", "no linear or conv layer"}},
		{"shape", map[string]safetensors.Tensor{kq + ".lora_down.weight": f(z(4*31), 4, 31), kq + ".lora_up.weight": f(z(32*4), 32, 4)}, []string{kq + ".lora_down.weight", "needs [4 32]"}},
		{"rank", map[string]safetensors.Tensor{kq + ".lora_down.weight": f(z(4*32), 4, 32), kq + ".lora_up.weight": f(z(32*3), 32, 3)}, []string{kq + ".lora_up.weight", "needs [32 4]"}},
		{"missing up", map[string]safetensors.Tensor{kq + ".lora_down.weight": f(z(4*32), 4, 32)}, []string{kq + ".lora_down.weight", "no matching up"}},
		{"alpha shape", map[string]safetensors.Tensor{kq + ".lora_down.weight": f(z(4*32), 4, 32), kq + ".lora_up.weight": f(z(32*4), 32, 4), kq + ".alpha": f(z(2), 2)}, []string{kq + ".alpha", "scalar"}},
		{"SDXL", map[string]safetensors.Tensor{"lora_te1_text_model_encoder_layers_0_mlp_fc1.lora_down.weight": f(z(4), 1, 4)}, []string{"lora_te1_", "SDXL"}},
		{"LoHa", map[string]safetensors.Tensor{kq + ".hada_w1_a": f(z(4), 1, 4)}, []string{kq + ".hada_w1_a", "not plain LoRA"}},
		{"mixed", map[string]safetensors.Tensor{kq + ".lora_down.weight": f(z(4*32), 4, 32), "unet." + q + ".lora.up.weight": f(z(32*4), 32, 4)}, []string{"unet." + q + ".lora.up.weight", "mixes layouts"}},
		{"duplicate", map[string]safetensors.Tensor{"unet." + q + ".lora.down.weight": f(z(4*32), 4, 32), "unet." + q + ".lora_layer.down.weight": f(z(4*32), 4, 32)}, []string{q + ".lora_layer.down.weight", "same tensor"}},
		{"empty", map[string]safetensors.Tensor{}, []string{"no LoRA tensors"}},
	} {
		p := writeFile(t, "bad.safetensors", c.tensors)
		l, err := Load(p, Targets{UNet: u.W})
		if err == nil {
			l.Release()
			t.Errorf("%s: no error", c.name)
			continue
		}
		t.Logf("%s: %v", c.name, err)
		for _, w := range append(c.want, p) {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q does not mention %q", c.name, err, w)
			}
		}
	}
}

// TestLoad_oldProcessorLayout reads diffusers' attention-processor key
// layout (<attn>.processor.to_out_lora.down.weight, no "unet." prefix).
func TestLoad_oldProcessorLayout(t *testing.T) {
	e := engine(t)
	u := loadUNet(t, e)
	attn := "up_blocks.1.attentions.0.transformer_blocks.0.attn2"
	p := writeFile(t, "old.safetensors", map[string]safetensors.Tensor{
		attn + ".processor.to_out_lora.down.weight": safetensors.F32Tensor(make([]float32, 4*64), 4, 64),
		attn + ".processor.to_out_lora.up.weight":   safetensors.F32Tensor(make([]float32, 64*4), 64, 4),
		attn + ".processor.to_k_lora.down.weight":   safetensors.F32Tensor(make([]float32, 4*32), 4, 32),
		attn + ".processor.to_k_lora.up.weight":     safetensors.F32Tensor(make([]float32, 64*4), 64, 4),
	})
	l, err := Load(p, Targets{UNet: u.W})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release()
	if l.Format != Diffusers || l.UNet[attn+".to_out.0"] == nil || l.UNet[attn+".to_k"] == nil {
		t.Errorf("format %s, adapters %v", l.Format, sortedKeys(l.UNet))
	}
}

// TestIndexModules_ambiguous: two modules whose names differ only in dots
// vs underscores cannot be told apart in the kohya layout.
func TestIndexModules_ambiguous(t *testing.T) {
	e := engine(t)
	w := nn.NewWeights(e)
	defer w.Release()
	w.Set("a.b_c.weight", e.FromSlice(make([]float32, 4), 2, 2))
	w.Set("a_b.c.weight", e.FromSlice(make([]float32, 4), 2, 2))
	w.Set("a.norm.weight", e.FromSlice(make([]float32, 2), 2))
	ix := indexModules(w)
	if p, ok := ix.under["a_b_c"]; !ok || p != "" {
		t.Errorf("a_b_c resolves to %q, %v; want ambiguous", p, ok)
	}
	if _, ok := ix.shapes["a.norm"]; ok {
		t.Error("a 1-D norm weight was indexed as an adaptable layer")
	}
}
