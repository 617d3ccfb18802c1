package sd

import (
	"math"
	"path/filepath"
	"testing"

	"github.com/instructbooth/instructbooth/gpu"
	"github.com/instructbooth/instructbooth/model/safetensors"
)

func tinyDiffusers(t testing.TB) string { return filepath.Join(fixtures(t), "sd-tiny", "diffusers") }
func tinySingleFile(t testing.TB) string {
	return filepath.Join(fixtures(t), "sd-tiny", "single-file", "sd-tiny.safetensors")
}
func bpeFile(t testing.TB) string {
	return filepath.Join(fixtures(t), "clip-bpe", "bpe_simple_vocab_16e6.txt.gz")
}

func load(t *testing.T, e *gpu.Engine, path string, o LoadOptions) *Pipeline {
	t.Helper()
	p, err := Load(e, path, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Release)
	return p
}

// refIDs reads the text encoder fixture's token ids.
func refIDs(t *testing.T, f *safetensors.File) [][]int32 {
	raw, info, err := f.Int64("in/input_ids")
	if err != nil {
		t.Fatal(err)
	}
	ids := make([][]int32, info.Shape[0])
	for i := range ids {
		for j := 0; j < info.Shape[1]; j++ {
			ids[i] = append(ids[i], int32(raw[i*info.Shape[1]+j]))
		}
	}
	return ids
}

// tinyOutputs are a pipeline's outputs on the fixtures' inputs: the text
// encoder's last hidden state, the U-Net's noise prediction and the VAE's
// decoded image (nil for components not loaded).
type tinyOutputs struct{ text, unet, vae *gpu.Tensor }

func runTiny(t *testing.T, e *gpu.Engine, p *Pipeline) tinyOutputs {
	t.Helper()
	var o tinyOutputs
	e.NoGrad(func() {
		if p.Text != nil {
			f, _ := refFile(t, e, "text_encoder.safetensors")
			out, err := p.Text.Forward(refIDs(t, f))
			if err != nil {
				t.Fatal(err)
			}
			o.text = out.Last
		}
		if p.UNet != nil {
			f, get := refFile(t, e, "unet.safetensors")
			ts, _, _ := f.Int64("in/timesteps")
			t32 := e.FromSlice([]float32{float32(ts[0]), float32(ts[1])}, 2)
			o.unet = p.UNet.Forward(get("in/latents"), t32, get("in/encoder_hidden_states"))
		}
		if p.VAE != nil {
			_, get := refFile(t, e, "vae.safetensors")
			o.vae = p.VAE.Decode(get("in/latent"))
		}
	})
	return o
}

// expectFP16w compares the outputs with the fixtures' fp16-weight
// references (tolerance as for fp32: the README's 1e-4 * max(1, absmax)).
func expectFP16w(t *testing.T, e *gpu.Engine, o tinyOutputs) {
	t.Helper()
	if o.text != nil {
		f, _ := refFile(t, e, "text_encoder.safetensors")
		expectClose(t, f, "out/last_hidden_state_fp16w", o.text, 1e-4)
	}
	if o.unet != nil {
		f, _ := refFile(t, e, "unet.safetensors")
		expectClose(t, f, "out/noise_pred_fp16w", o.unet, 1e-4)
	}
	if o.vae != nil {
		f, _ := refFile(t, e, "vae.safetensors")
		expectClose(t, f, "out/decoded_fp16w", o.vae, 1e-4)
	}
}

func maxDiff(t *testing.T, a, b *gpu.Tensor) float64 {
	t.Helper()
	x, y := a.MustRead(), b.MustRead()
	if len(x) != len(y) {
		t.Fatalf("shapes %v and %v", a.Shape(), b.Shape())
	}
	d := 0.0
	for i := range x {
		d = math.Max(d, math.Abs(float64(x[i]-y[i])))
	}
	return d
}

// TestLoad_singleFile loads the fp16 single-file checkpoint (configuration
// from the diffusers folder, tokenizer from openai's BPE file) and checks
// every component against the fp16-weight references, then checks that the
// diffusers folder's fp16 variant gives the same U-Net output.
func TestLoad_singleFile(t *testing.T) {
	e := engine(t)
	p := load(t, e, tinySingleFile(t), LoadOptions{ConfigDir: tinyDiffusers(t), TokenizerPath: bpeFile(t)})
	if p.Source.Layout != LayoutSingleFile || len(p.Source.Files) != 1 || p.Source.Tokenizer != bpeFile(t) {
		t.Errorf("source %+v", p.Source)
	}
	if p.UNet.Cfg.Heads[0] != 8 || p.Text.Cfg.Heads != 4 || p.ScalingFactor != 0.18215 {
		t.Errorf("configuration: unet heads %v, text heads %d, scaling %g", p.UNet.Cfg.Heads, p.Text.Cfg.Heads, p.ScalingFactor)
	}
	ref, _ := refFile(t, e, "text_encoder.safetensors")
	ids, _ := p.Tokenizer.EncodeSD("a photo of sks dog")
	for j, id := range refIDs(t, ref)[0] {
		if ids[j] != id {
			t.Fatalf("token %d: %d, want %d", j, ids[j], id)
		}
	}
	single := runTiny(t, e, p)
	expectFP16w(t, e, single)

	q := load(t, e, tinyDiffusers(t), LoadOptions{PreferFP16: true, Components: CompUNet})
	if q.Source.Variant != "fp16" || q.Text != nil || q.VAE != nil || q.Tokenizer != nil {
		t.Errorf("fp16 variant: source %+v, text %v, vae %v", q.Source, q.Text != nil, q.VAE != nil)
	}
	folder := runTiny(t, e, q)
	expectFP16w(t, e, folder)
	if d := maxDiff(t, single.unet, folder.unet); d > 1e-6 {
		t.Errorf("single file and diffusers fp16 U-Net outputs differ by %g", d)
	} else {
		t.Logf("single file vs diffusers fp16 U-Net: max difference %g", d)
	}
}

// TestLoad_diffusers loads the fp32 diffusers folder and checks every
// component against the fp32 references.
func TestLoad_diffusers(t *testing.T) {
	e := engine(t)
	p := load(t, e, tinyDiffusers(t), LoadOptions{})
	if p.Source.Layout != LayoutDiffusers || p.Source.Variant != "" || len(p.Source.Files) != 3 {
		t.Errorf("source %+v", p.Source)
	}
	o := runTiny(t, e, p)
	f, _ := refFile(t, e, "text_encoder.safetensors")
	expectClose(t, f, "out/last_hidden_state", o.text, 1e-4)
	f, _ = refFile(t, e, "unet.safetensors")
	expectClose(t, f, "out/noise_pred", o.unet, 1e-4)
	f, _ = refFile(t, e, "vae.safetensors")
	expectClose(t, f, "out/decoded", o.vae, 1e-4)
	d, _ := refFile(t, e, "ddim_ddpo.safetensors")
	abar, _, _ := d.Float32("sched/alphas_cumprod")
	for _, i := range []int{0, 500, 999} {
		if math.Abs(float64(p.Schedule.AlphasCumprod[i]-abar[i])) > 1e-6 {
			t.Errorf("alphas_cumprod[%d] = %g, want %g", i, p.Schedule.AlphasCumprod[i], abar[i])
		}
	}
}

// TestLoad_F16Weights: with packed weights the fp32 folder gives the
// fp16-weight references, weights take about half the memory, and the
// per-use unpacked copies are all freed after the forward passes.
func TestLoad_F16Weights(t *testing.T) {
	e := engine(t)
	live := func() uint64 { return e.MemStats().Live[gpu.Weights] }
	before := live()
	p32, err := Load(e, tinyDiffusers(t), LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	w32 := live() - before
	p32.Release()
	if live() != before {
		t.Fatalf("Release left %d weight bytes", live()-before)
	}
	p := load(t, e, tinyDiffusers(t), LoadOptions{F16Weights: true})
	w16 := live() - before
	ratio := float64(w16) / float64(w32)
	t.Logf("weights: f32 %d bytes, packed f16 %d bytes (%.3f)", w32, w16, ratio)
	// Biases and norms stay f32 and small buffers round up to 256 bytes,
	// so the tiny model does not reach exactly one half.
	if ratio > 0.6 || ratio < 0.45 {
		t.Errorf("packed weights take %.3f of the f32 size, want about half", ratio)
	}
	if !p.UNet.W.Packed("conv_in.weight") || p.UNet.W.Packed("conv_in.bias") {
		t.Errorf("conv_in.weight should be packed, conv_in.bias not")
	}
	o := runTiny(t, e, p)
	if got := live() - before; got != w16 {
		t.Errorf("after the forward passes %d weight bytes are live, want %d (unpacked copies leaked)", got, w16)
	}
	expectFP16w(t, e, o)

	// The single file's f16 data goes to the GPU as is.
	q := load(t, e, tinySingleFile(t), LoadOptions{F16Weights: true, ConfigDir: tinyDiffusers(t), Components: CompUNet})
	qo := runTiny(t, e, q)
	expectFP16w(t, e, qo)
	if d := maxDiff(t, o.unet, qo.unet); d > 1e-6 {
		t.Errorf("packed fp32-folder and packed single-file U-Nets differ by %g", d)
	}
}
